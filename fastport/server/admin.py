"""Admin authentication for ``createSession`` (and the ``fastport session`` commands).

Two credentials are accepted: HTTP Basic against ``ADMIN_USER`` / ``ADMIN_PASS`` (the
original broker's variables) when they are set, and ``Authorization: Bearer <token>``
with the admin token. The token comes from configuration or from
``<data-dir>/admin-token``, created with mode 0600 on first start, so the broker
never runs without an admin credential. Every comparison is constant time.

``AuthThrottle`` slows down and then refuses a client address that keeps sending wrong REST
credentials (admin or session owner): a few failures are free, the next ones are answered
later and later, and past the limit the address gets 429 until its window passes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import os
import secrets
import time
from collections.abc import Callable
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


class AuthThrottle:
    """Failed REST credentials per client address, in a fixed window from the first failure.

    The first ``free`` failures of a window are answered at once; each later one is answered after
    ``base_delay_s``, doubling up to ``max_delay_s``; from the ``limit``-th failure on, every
    credentialed request of the address is refused (429, ``retry_after``) until the window ends,
    with the right credential too. A success neither resets nor extends the window (an attacker
    could interleave its own valid credential). At most ``max_addresses`` are remembered: expired
    windows go first, then the oldest. Each failure is logged once, without the credential, at
    most ``log_burst`` lines per ``log_period_s`` (the lines left out are counted in the next one).
    """

    __slots__ = (
        "free",
        "limit",
        "window_s",
        "base_delay_s",
        "max_delay_s",
        "max_addresses",
        "clock",
        "log_burst",
        "log_period_s",
        "_windows",
        "_log_start",
        "_logged",
        "_unlogged",
    )

    def __init__(
        self,
        *,
        free: int = 5,
        limit: int = 20,
        window_s: float = 60.0,
        base_delay_s: float = 0.1,
        max_delay_s: float = 2.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        log_burst: int = 10,
        log_period_s: float = 10.0,
    ) -> None:
        self.free = free
        self.limit = limit
        self.window_s = window_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_addresses = max_addresses
        self.clock = clock
        self.log_burst = log_burst
        self.log_period_s = log_period_s
        #: address -> [window start, failures in the window]
        self._windows: dict[str, list[float]] = {}
        self._log_start = -math.inf
        self._logged = 0
        self._unlogged = 0

    def _window(self, address: str, now: float) -> list[float] | None:
        window = self._windows.get(address)
        if window is not None and now - window[0] >= self.window_s:
            del self._windows[address]
            return None
        return window

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None if it is not refused."""
        now = self.clock()
        window = self._window(address, now)
        if window is None or window[1] < self.limit:
            return None
        return max(1, math.ceil(window[0] + self.window_s - now))

    def failure(self, address: str, kind: str) -> float:
        """Record a refused credential of ``kind`` from ``address``; the seconds to delay its answer."""
        now = self.clock()
        window = self._window(address, now)
        if window is None:
            if len(self._windows) >= self.max_addresses:
                self._evict(now)
            window = self._windows[address] = [now, 0]
        window[1] += 1
        failures = int(window[1])
        self._log(address, kind, failures)
        if failures <= self.free:
            return 0.0
        return float(min(self.base_delay_s * 2.0 ** min(failures - self.free - 1, 30), self.max_delay_s))

    def _evict(self, now: float) -> None:
        for address in [a for a, w in self._windows.items() if now - w[0] >= self.window_s]:
            del self._windows[address]
        while len(self._windows) >= self.max_addresses:
            del self._windows[next(iter(self._windows))]  # dicts keep insertion order: the oldest window

    def _log(self, address: str, kind: str, failures: int) -> None:
        now = self.clock()
        if now - self._log_start >= self.log_period_s:
            self._log_start, self._logged = now, 0
        if self._logged >= self.log_burst:
            self._unlogged += 1
            return
        self._logged += 1
        unlogged, self._unlogged = self._unlogged, 0
        logger.warning(
            "refused %s credential from %s (%d in its window%s)",
            kind,
            address or "?",
            failures,
            f"; {unlogged} more refusals not logged" if unlogged else "",
        )
