"""Admin authentication for ``createSession`` (and the ``fastport session`` commands).

Two credentials are accepted: HTTP Basic against ``ADMIN_USER`` / ``ADMIN_PASS`` (the
original broker's variables) when they are set, and ``Authorization: Bearer <token>``
with the admin token. The token comes from configuration or from
``<data-dir>/admin-token``, created with mode 0600 on first start, so the broker
never runs without an admin credential. Every comparison is constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Final

from fastport.errors import AuthError, ConfigError, ErrorCode

logger = logging.getLogger("fastport.http")

TOKEN_FILE: Final = "admin-token"


def token_path(data_dir: Path) -> Path:
    """Where the admin token of ``data_dir`` lives."""
    return data_dir / TOKEN_FILE


def load_or_create_token(data_dir: Path) -> str:
    """Read the admin token from ``data_dir``, creating it (mode 0600) if absent.

    Raises:
        ConfigError: the data directory or token file cannot be used.
    """
    path = token_path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            token = path.read_text(encoding="utf-8").strip()
            if len(token) < 16:
                raise ConfigError(f"admin token file {path} is empty or too short") from None
            return token
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        logger.info("created admin token in %s", path)
        return token
    except OSError as exc:
        raise ConfigError(f"cannot use data dir {data_dir}: {exc.strerror}") from None


class AdminAuth:
    """Checks the ``Authorization`` header of admin requests."""

    __slots__ = ("_basic", "_token")

    def __init__(self, token: str, user: str | None = None, password: str | None = None) -> None:
        self._token = token.encode("utf-8")
        self._basic = None if user is None or password is None else f"{user}:{password}".encode()

    def check(self, authorization: str | None) -> None:
        """Accept or refuse an admin request.

        Raises:
            AuthError: ``Missing Authorization Header`` or ``Unauthorized: Invalid Admin Credentials``.
        """
        if not authorization:
            raise AuthError("Missing Authorization Header", code=ErrorCode.ADMIN_AUTH_MISSING)
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and hmac.compare_digest(credential.encode("utf-8"), self._token):
            return
        if scheme == "basic" and self._basic is not None:
            try:
                decoded = base64.b64decode(credential, validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            if hmac.compare_digest(decoded, self._basic):
                return
        raise AuthError("Unauthorized: Invalid Admin Credentials", code=ErrorCode.ADMIN_AUTH_INVALID)
