"""fastport: a multi-tenant pub/sub broker speaking the fastPort WebSocket protocol."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
