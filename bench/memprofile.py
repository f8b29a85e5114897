"""Where an idle fastport connection's memory goes: tracemalloc in an in-process broker, N connections.

Usage: ``python bench/memprofile.py [--connections 2000] [--top 12] [--markdown]``.

Starts a ``FastportServer`` on uvloop in this process with tracemalloc on, takes a heap snapshot, lets
``bench/loadgen.py`` (a subprocess, the S4 scenario with ``--hold-dir``) open N authenticated, subscribed
connections, takes a second snapshot while they are open, and prints the growth per connection by allocation
site. Allocations outside Python's allocators (the kernel, some C libraries) show up only in the RSS line, so
the gap between "RSS growth" and "traced growth" is memory tracemalloc cannot attribute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import linecache
import os
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

import uvloop

from fastport.config import ServerConfig
from fastport.server.app import FastportServer

HERE = Path(__file__).resolve().parent
TOKEN = "memprofile-admin-token-0123456789"


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def create_session(port: int) -> None:
    body = json.dumps({"sessionName": "bench", "password": "pw", "retryInterval": 30000}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/createSession",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["success"] is True


def short(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for marker in ("site-packages/", "/fastport/", "/lib/python3"):
        if marker in name:
            name = name.split(marker, 1)[1]
            if marker == "/fastport/":
                name = "fastport/" + name
            break
    return f"{name}:{frame.lineno}"


async def profile(args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-memprofile-") as tmp:
        server = await FastportServer.start(
            ServerConfig(port=0, data_dir=Path(tmp), admin_token=TOKEN, log_level="warning")
        )
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, create_session, server.port)
            await asyncio.sleep(0.5)
            before, rss_before = tracemalloc.take_snapshot(), rss_kib()
            argv = [
                sys.executable,
                str(HERE / "loadgen.py"),
                "--kind",
                "fastport",
                "--url",
                f"ws://127.0.0.1:{server.port}/",
                "--broker-pid",
                str(os.getpid()),
                "--session",
                "bench",
                "--password",
                "pw",
                "--scenarios",
                "s4",
                "--connections",
                str(args.connections),
                "--settle",
                "1",
                "--hold-dir",
                tmp,
            ]
            if args.loadgen_cpu >= 0:
                argv = ["taskset", "-c", str(args.loadgen_cpu), *argv]
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            try:
                # The file handshake of bench/loadgen.py --hold-dir: polling is the protocol, and a stat call
                # every 100 ms (a touch once) does not disturb the idle connections being measured.
                ready = Path(tmp, "ready")
                deadline = time.monotonic() + 300
                while not ready.exists() and time.monotonic() < deadline and process.returncode is None:  # noqa: ASYNC110, ASYNC240
                    await asyncio.sleep(0.1)
                after, rss_after = tracemalloc.take_snapshot(), rss_kib()
                Path(tmp, "done").touch()  # noqa: ASYNC240
                _, err = await asyncio.wait_for(process.communicate(), 120)
            finally:
                if process.returncode is None:  # never leave the load generator behind
                    process.kill()
                    await process.wait()
            if process.returncode != 0:
                raise RuntimeError(f"loadgen failed: {err.decode(errors='replace')[-2000:]}")
        finally:
            await server.close()
    n = args.connections
    stats = after.compare_to(before, "traceback")
    traced = sum(stat.size_diff for stat in stats)
    lines = [
        (
            f"{n:,} idle, authenticated, subscribed connections to an in-process fastport "
            f"(tracemalloc on, which itself costs memory): RSS growth {(rss_after - rss_before) / n:.2f} KiB "
            f"per connection, traced Python-allocator growth {traced / n / 1024:.2f} KiB per connection."
        ),
        "",
        "| bytes/connection | allocations/connection | allocated at (innermost frame ← callers) | source line |",
        "|---:|---:|---|---|",
    ]
    for stat in stats[: args.top]:
        frames = list(stat.traceback)[::-1][:3]  # innermost first
        where = " ← ".join(f"`{short(frame)}`" for frame in frames)
        code = linecache.getline(frames[0].filename, frames[0].lineno).strip().replace("|", "\\|")[:70]
        lines.append(f"| {stat.size_diff / n:,.0f} | {stat.count_diff / n:.2f} | {where} | `{code}` |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--loadgen-cpu", type=int, default=0, help="taskset CPU for loadgen.py (-1: none)")
    parser.add_argument("--markdown", action="store_true", help="(the output is always markdown)")
    args = parser.parse_args()
    tracemalloc.start(8)
    for line in uvloop.run(profile(args)):
        print(line)


if __name__ == "__main__":
    main()
