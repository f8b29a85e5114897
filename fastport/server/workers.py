"""``fastport serve --workers N``: N broker processes sharing one port, joined through the engine.

The parent starts N copies of the same ``fastport serve`` command (with ``--workers 1`` and
``SO_REUSEPORT``), passes SIGINT/SIGTERM on to them, and exits when they have; if one dies
with an error, the others are stopped and its status is returned.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger("fastport.server")


def supervise(argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` copies of ``fastport <argv>`` and wait for them; returns the exit status."""
    env = {**os.environ, "FASTPORT_REUSE_PORT": "1"}
    command = [sys.executable, "-m", "fastport", *argv, "--workers", "1"]
    children = [subprocess.Popen(command, env=env) for _ in range(workers)]
    logger.info("started %d workers: %s", workers, ", ".join(str(child.pid) for child in children))
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    status = 0
    while any(child.poll() is None for child in children):
        for child in children:
            code = child.poll()
            if code not in (None, 0) and not stopping:
                logger.error("worker %d exited with %d; stopping the others", child.pid, code)
                status = code if code > 0 else 1
                forward(signal.SIGTERM, None)
        time.sleep(0.1)
    return status
