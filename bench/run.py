"""Benchmark fastport (compiled and pure-Python twins) against Mosquitto and NATS; write bench/RESULTS.md.

Usage: ``python bench/run.py [--brokers ...] [--scenarios s1,...,s7] [--runs 3] [--quick]`` (bench/README.md).

For each run and each broker: start a fresh broker pinned to ``--broker-cpu`` (fastport via
``python -m fastport serve``, Mosquitto and NATS as private instances on free loopback ports with a WebSocket
listener, in a temp dir), create the fastport session, run ``bench/loadgen.py`` pinned to ``--loadgen-cpu``
(one process, one event loop), stop the broker by PID. Then ``bench/micro.py`` and, with ``--profile``, one more
fastport S1 under py-spy. Every wait is bounded; every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
SESSION, PASSWORD = "bench", "bench-pw"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"
BROKERS = ("fastport", "fastport-py", "mosquitto", "nats")
LABELS = {
    "fastport": "fastport (compiled)",
    "fastport-py": "fastport (pure Python)",
    "mosquitto": "Mosquitto 2 (MQTT QoS 1)",
    "nats": "NATS 2 (core)",
}
PEERS = ("mosquitto", "nats")
START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_nofile() -> None:
    """preexec_fn: lift the open-file limit to the hard limit (10k connections need 10k descriptors).

    preexec_fn is unsafe in a process with threads; bench/run.py starts none.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"broker on port {port} did not start:\n{log.read_text(errors='replace')[-3000:]}")


@dataclass
class RunningBroker:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    http_port: int = 0
    workdir: Path = field(default_factory=Path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def _spawn(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = cwd / "broker.log"
    with log.open("wb") as handle:
        return subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            preexec_fn=raise_nofile,  # noqa: PLW1509  # no threads: see raise_nofile
        )


def start_fastport(
    name: str,
    workdir: Path,
    cpu: int,
    extra: tuple[str, ...] = (),
    create_session: bool = True,
    session: dict[str, Any] | None = None,
) -> RunningBroker:
    """``extra``: more ``fastport serve`` flags (S6 engine, S7 store); ``session``: more createSession fields;
    ``create_session=False`` for a second node of an engine, where the session already exists."""
    port = free_port()
    env = {**os.environ, "FASTPORT_ADMIN_TOKEN": ADMIN_TOKEN}
    env.pop("FASTPORT_NO_EXTENSIONS", None)
    if name == "fastport-py":
        env["FASTPORT_NO_EXTENSIONS"] = "1"
    argv = pinned(
        cpu,
        [
            sys.executable,
            "-m",
            "fastport",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "data"),
            "--log-level",
            "warning",
            *extra,
        ],
    )
    process = _spawn(argv, workdir, env)
    broker = RunningBroker(name, process, f"ws://127.0.0.1:{port}/", port, workdir)
    try:
        wait_for_port(port, process, workdir / "broker.log")
        health = http_json(port, "GET", "/health")
        expected = "python" if name == "fastport-py" else "compiled"
        if health.get("implementation") != expected:
            raise RuntimeError(f"{name}: broker runs the {health.get('implementation')} twins, not {expected}")
        if create_session:
            answer = http_json(
                port,
                "POST",
                "/api/createSession",
                {
                    "sessionName": SESSION,
                    "password": PASSWORD,
                    "retryInterval": 30000,
                    "maxRetryLimit": 10,
                    **(session or {}),
                },
            )
            if answer.get("success") is not True:
                raise RuntimeError(f"createSession failed: {answer}")
    except BaseException:
        broker.stop()
        raise
    return broker


def start_mosquitto(workdir: Path, cpu: int) -> RunningBroker:
    mqtt_port, ws_port = free_port(), free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        "persistence false\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n"
        "max_queued_messages 10000\nmax_inflight_messages 100\nset_tcp_nodelay true\n"
        f"listener {mqtt_port} 127.0.0.1\nsocket_domain ipv4\nallow_anonymous true\n"
        f"listener {ws_port} 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\nallow_anonymous true\n"
    )
    process = _spawn(pinned(cpu, [MOSQUITTO, "-c", str(config)]), workdir)
    broker = RunningBroker("mosquitto", process, f"ws://127.0.0.1:{ws_port}/", workdir=workdir)
    try:
        wait_for_port(ws_port, process, workdir / "broker.log")
    except BaseException:
        broker.stop()
        raise
    return broker


def start_nats(workdir: Path, cpu: int) -> RunningBroker:
    client_port, ws_port = free_port(), free_port()
    config = workdir / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{client_port}\n"
        "max_pending: 268435456\n"
        f"websocket {{\n  host: 127.0.0.1\n  port: {ws_port}\n  no_tls: true\n  compression: false\n}}\n"
    )
    process = _spawn(pinned(cpu, [NATS, "-c", str(config)]), workdir)
    broker = RunningBroker("nats", process, f"ws://127.0.0.1:{ws_port}/", workdir=workdir)
    try:
        wait_for_port(ws_port, process, workdir / "broker.log")
    except BaseException:
        broker.stop()
        raise
    return broker


def start_broker(name: str, workdir: Path, cpu: int) -> RunningBroker:
    if name.startswith("fastport"):
        return start_fastport(name, workdir, cpu)
    if name == "mosquitto":
        return start_mosquitto(workdir, cpu)
    return start_nats(workdir, cpu)


def fastport_publish_limit() -> float:
    """fastport's default per-connection publish rate limit (publishes/s), or 0 if this version has none."""
    try:
        from fastport.config import BrokerLimits
    except ImportError:
        return 0.0
    return float(getattr(BrokerLimits(), "publish_rate_per_s", 0.0) or 0.0)


def http_json(port: int, method: str, path: str, body: Any = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


@contextlib.contextmanager
def broker_running(name: str, cpu: int) -> Iterator[RunningBroker]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        broker = start_broker(name, Path(tmp), cpu)
        try:
            yield broker
        finally:
            broker.stop()


def run_loadgen(broker: RunningBroker, args: argparse.Namespace, scenarios: str) -> dict[str, Any]:
    kind = "fastport" if broker.name.startswith("fastport") else ("mqtt" if broker.name == "mosquitto" else "nats")
    argv = [
        sys.executable,
        str(HERE / "loadgen.py"),
        "--kind",
        kind,
        "--url",
        broker.url,
        "--broker-pid",
        str(broker.pid),
        "--session",
        SESSION,
        "--password",
        PASSWORD,
        "--scenarios",
        scenarios,
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--window",
        str(args.window),
        "--subscribers",
        str(args.subscribers),
        "--latency-duration",
        str(args.latency_duration),
        "--rate",
        str(args.rate),
        "--roundtrip-duration",
        str(args.roundtrip_duration),
        "--connections",
        str(args.connections),
        "--split-publishers",
        str(args.split_publishers),
    ]
    if kind == "fastport" and args.publish_cap:
        argv += ["--publish-cap", str(args.publish_cap)]
    env = {**os.environ}
    env.pop("FASTPORT_NO_EXTENSIONS", None)
    result = subprocess.run(
        pinned(args.loadgen_cpu, argv),
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=args.timeout,
        preexec_fn=raise_nofile,
    )
    if result.returncode != 0:
        raise RuntimeError(f"loadgen for {broker.name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


# -- S6 cross-node fan-out through Redis, S7 SQLite store cost ------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
S6_CONFIGS = ("single", "redis")
S6_LABELS = {"single": "1 node, no engine (50 subscribers on it)", "redis": "2 nodes via Redis (25 on A, 25 on B)"}
S7_CONFIGS = tuple(
    (store, durable, window) for durable in (0, 10) for window in (1, 64) for store in ("memory", "sqlite")
)


def redis_pid() -> int:
    """The Redis server's PID (read from INFO, only to read its CPU time in /proc), or 0."""
    try:
        out = subprocess.run([REDIS_CLI, "info", "server"], check=False, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    for line in out.stdout.splitlines():
        if line.startswith("process_id:"):
            pid = int(line.split(":", 1)[1])
            return pid if os.access(f"/proc/{pid}/stat", os.R_OK) else 0
    return 0


def redis_delete_prefix(prefix: str) -> int:
    """Delete every key under ``prefix`` (bounded: SCAN through redis-cli, DEL in batches); return how many."""
    keys = subprocess.run(
        [REDIS_CLI, "--scan", "--pattern", f"{prefix}*"], check=False, capture_output=True, text=True, timeout=60
    ).stdout.split()
    for i in range(0, len(keys), 500):
        subprocess.run([REDIS_CLI, "del", *keys[i : i + 500]], check=False, capture_output=True, timeout=60)
    return len(keys)


def loadgen_argv(args: argparse.Namespace, url: str, pid: int, scenarios: str) -> list[str]:
    argv = [
        sys.executable,
        str(HERE / "loadgen.py"),
        "--kind",
        "fastport",
        "--url",
        url,
        "--broker-pid",
        str(pid),
        "--session",
        SESSION,
        "--password",
        PASSWORD,
        "--scenarios",
        scenarios,
        "--warmup",
        str(args.warmup),
        "--duration",
        str(args.duration),
        "--subscribers",
        str(args.subscribers),
        "--roundtrip-duration",
        str(args.roundtrip_duration),
    ]
    if args.publish_cap:
        argv += ["--publish-cap", str(args.publish_cap)]
    return argv


def run_loadgen_argv(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    env = {**os.environ}
    env.pop("FASTPORT_NO_EXTENSIONS", None)
    result = subprocess.run(
        pinned(args.loadgen_cpu, argv),
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=args.timeout,
        preexec_fn=raise_nofile,
    )
    if result.returncode != 0:
        raise RuntimeError(f"loadgen failed ({result.returncode}):\n{result.stderr[-3000:]}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def run_s6(args: argparse.Namespace, run: int, config: str, aux: int) -> dict[str, Any]:
    """One S6 run: one node without engine, or nodes A and B on one Redis (both pinned to ``--broker-cpu``)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-s6-{config}-") as tmp:
        if config == "single":
            one = start_fastport("fastport", Path(tmp), args.broker_cpu)
            try:
                argv = [*loadgen_argv(args, one.url, one.pid, "s6"), "--s6-window", str(args.s6_window)]
                single: dict[str, Any] = run_loadgen_argv(args, argv)["s6"]
                return single
            finally:
                one.stop()
        prefix = f"bench-s6-{os.getpid()}-{run}-{int(time.time())}:"
        engine = ("--engine", REDIS_URL, "--engine-prefix", prefix)
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        a: RunningBroker | None = None
        b: RunningBroker | None = None
        try:
            a = start_fastport("fastport", Path(tmp) / "a", args.broker_cpu, engine)
            b = start_fastport("fastport", Path(tmp) / "b", args.broker_cpu, engine, create_session=False)
            argv = [
                *loadgen_argv(args, a.url, a.pid, "s6"),
                "--s6-window",
                str(args.s6_window),
                "--url-b",
                b.url,
                "--broker-pid-b",
                str(b.pid),
            ]
            if aux:
                argv += ["--aux-pid", str(aux)]
            cross: dict[str, Any] = run_loadgen_argv(args, argv)["s6"]
            return cross
        finally:
            for node in (b, a):
                if node is not None:
                    node.stop()
            redis_delete_prefix(prefix)


def run_s7(args: argparse.Namespace, store: str, durable: int, window: int) -> dict[str, Any]:
    """One S7 run on a fresh broker: in-memory default or ``--store sqlite:TMP/state.db``."""
    with tempfile.TemporaryDirectory(prefix=f"bench-s7-{store}-") as tmp:
        extra = ("--store", f"sqlite:{tmp}/state.db") if store == "sqlite" else ()
        # Room for every queued message, so none is dropped (and not written) when a durable queue fills up.
        broker = start_fastport(
            "fastport",
            Path(tmp),
            args.broker_cpu,
            extra,
            session={"maxQueuedMessages": 1_000_000, "maxQueuedBytes": 1 << 30},
        )
        try:
            argv = [
                *loadgen_argv(args, broker.url, broker.pid, "s7"),
                "--windows",
                str(window),
                "--durable",
                str(durable),
            ]
            result: dict[str, Any] = run_loadgen_argv(args, argv)["s7"][str(window)]
            db = Path(tmp) / "state.db"
            if db.exists():
                result["db_mib"] = sum(f.stat().st_size for f in Path(tmp).glob("state.db*")) / 2**20
            return result
        finally:
            broker.stop()


def run_extra(args: argparse.Namespace) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """S6/S7 results, keyed by configuration, ``--runs`` runs each (configurations interleaved in each run)."""
    results: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    aux = redis_pid() if "s6" in args.scenario_list else 0
    for run in range(args.runs):
        if "s6" in args.scenario_list:
            for config in S6_CONFIGS:
                print(f"[run {run + 1}/{args.runs}] s6 {config}", file=sys.stderr, flush=True)
                try:
                    results.setdefault(f"s6/{config}", []).append(run_s6(args, run, config, aux))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    failures.append(f"run {run + 1} of s6 {config} failed: {str(exc).splitlines()[0]}")
                    print(failures[-1], file=sys.stderr, flush=True)
        if "s7" in args.scenario_list:
            for store, durable, window in S7_CONFIGS:
                key = f"s7/{store}/d{durable}/w{window}"
                print(f"[run {run + 1}/{args.runs}] {key}", file=sys.stderr, flush=True)
                try:
                    results.setdefault(key, []).append(run_s7(args, store, durable, window))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    failures.append(f"run {run + 1} of {key} failed: {str(exc).splitlines()[0]}")
                    print(failures[-1], file=sys.stderr, flush=True)
    return results, failures


def mmm(values: list[float], digits: int = 0) -> str:
    """min / median / max."""
    if not values:
        return "—"
    low, mid, high = stats(values)
    spec = f",.{digits}f"
    return f"{low:{spec}} / **{mid:{spec}}** / {high:{spec}}"


def extra_report(
    args: argparse.Namespace,
    results: dict[str, list[dict[str, Any]]],
    failures: list[str],
    load: tuple[str, str],
    wall_s: float,
    notes: list[str],
) -> list[str]:
    def col(key: str, field: str) -> list[float]:
        return [float(r[field]) for r in results.get(key, []) if isinstance(r.get(field), (int, float))]

    info = machine_info()
    out = [
        "",
        f"# S6/S7 (appended {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC})",
        "",
        f"Written by `python bench/run.py {' '.join(sys.argv[1:])}` in {wall_s / 60:.1f} min; fastport git "
        f"{info['fastport']}"
        + (" (with uncommitted changes)" if info["dirty"] == "yes" else "")
        + f"; {info['cores']} × {info['cpu']}. Cells are **min / median / max** over {args.runs} runs, each on "
        "freshly started brokers. Load average (1/5/15 min) at start: "
        f"{load[0]}; at end: {load[1]}.",
        "",
    ]
    out += [f"- {note}" for note in [*notes, *failures]]
    if notes or failures:
        out.append("")
    if "s6" in args.scenario_list:
        out += [
            (
                f"## S6 cross-node fan-out through Redis: 1 publisher on node A → {args.subscribers} subscribers, "
                f"256 B, window {args.s6_window}, acking"
            ),
            "",
            (
                "Pinning: every broker process (the single node, or nodes A **and** B) on CPU "
                f"{args.broker_cpu}, the load generator on CPU {args.loadgen_cpu} (`taskset`); Redis is the "
                "machine's own server, not pinned (shared with whatever else runs). So both configurations get "
                "the same one core for brokers, and the two-node rows show the cost of the engine, not extra "
                "capacity. Subscribers alternate between A and B (2 nodes) or are all on the one node, reported in "
                "the same two halves. Latency: publish-to-delivery from a monotonic timestamp in the payload, "
                "under the closed loop's full load (so it includes queueing behind the window). Broker CPU = "
                "utime+stime of all broker processes / deliveries; Redis CPU = the Redis server's, read from "
                "`/proc`."
            ),
            "",
        ]
        out += [
            (
                "| configuration | deliveries/s | p50 µs, subs on A | p99 µs, subs on A | p50 µs, subs on B | "
                "p99 µs, subs on B | broker CPU µs/delivery (A+B) | Redis CPU µs/delivery | load gen CPU % |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for config in S6_CONFIGS:
            key = f"s6/{config}"
            out.append(
                "| "
                + " | ".join(
                    [
                        S6_LABELS[config],
                        mmm(col(key, "deliveries_per_s")),
                        mmm(col(key, "a_p50_us")),
                        mmm(col(key, "a_p99_us")),
                        mmm(col(key, "b_p50_us")),
                        mmm(col(key, "b_p99_us")),
                        mmm(col(key, "cpu_us_per_delivery"), 2),
                        mmm(col(key, "aux_cpu_us_per_delivery"), 2),
                        mmm(col(key, "loadgen_cpu_pct")),
                    ]
                )
                + " |"
            )
        problems = [
            f"{key}: errors {r.get('errors')}, rejected {r.get('rejected')}, stalled {r.get('stalled')}"
            for key in (f"s6/{c}" for c in S6_CONFIGS)
            for r in results.get(key, [])
            if r.get("errors") or r.get("rejected")
        ]
        out += ["", "Errors / refused publishes: " + ("; ".join(problems) if problems else "none."), ""]
    if "s7" in args.scenario_list:
        out += [
            "## S7 SQLite store cost: publish → `publish_response`",
            "",
            (
                f"One publisher keeps W publishes unanswered; {args.roundtrip_duration:.0f} s measured after "
                f"{args.warmup:.0f} s warm-up, broker on CPU {args.broker_cpu}, load generator on CPU "
                f'{args.loadgen_cpu}. *10 offline durable*: 10 clients `init` with `"clientId": "d<i>", '
                '"durable": true`, subscribe to the topic and drop their connections before the publisher '
                "starts, so every message is queued for 10 clients (and, with the store, written; the session has "
                "`maxQueuedMessages` 1,000,000 so nothing is dropped). `sqlite` = `--store sqlite:TMP/state.db` "
                "(defaults: group commit every 2 ms, no fsync); `memory` = no `--store`."
            ),
            "",
        ]
        out += [
            (
                "| subscribers | window | store | publishes/s | p50 µs | p99 µs | broker CPU µs/publish | "
                "broker RSS MiB at end | DB MiB at end | sqlite/memory publishes/s |"
            ),
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for durable in (0, 10):
            for window in (1, 64):
                for store in ("memory", "sqlite"):
                    key = f"s7/{store}/d{durable}/w{window}"
                    mem = col(f"s7/memory/d{durable}/w{window}", "publishes_per_s")
                    mine = col(key, "publishes_per_s")
                    rel = (
                        f"{statistics.median(mine) / statistics.median(mem):.2f}×"
                        if store == "sqlite" and mine and mem
                        else ""
                    )
                    out.append(
                        "| "
                        + " | ".join(
                            [
                                "none" if not durable else f"{durable} offline durable",
                                str(window),
                                store,
                                mmm(mine),
                                mmm(col(key, "p50_us")),
                                mmm(col(key, "p99_us")),
                                mmm(col(key, "cpu_us_per_publish"), 1),
                                mmm(col(key, "rss_mib")),
                                mmm(col(key, "db_mib"), 1) if store == "sqlite" else "—",
                                rel,
                            ]
                        )
                        + " |"
                    )
        problems = [
            f"{key}: errors {r.get('errors')}, rejected {r.get('rejected')}"
            for key in results
            if key.startswith("s7/")
            for r in results[key]
            if r.get("errors") or r.get("rejected")
        ]
        out += ["", "Errors / refused publishes: " + ("; ".join(problems) if problems else "none."), ""]
    out += [
        "<details><summary>S6/S7 raw JSON per configuration and run</summary>",
        "",
        "```json",
        json.dumps(results, indent=1, sort_keys=True),
        "```",
        "",
        "</details>",
        "",
    ]
    return out


# -- profile --------------------------------------------------------------------------------------------------


def profile_fanout(args: argparse.Namespace) -> list[str]:
    """Run fastport (compiled) S1 under ``py-spy record``; return markdown lines with the top functions."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return ["py-spy is not installed (`pip install py-spy`); no profile."]
    lines: list[str] = []
    with broker_running("fastport", args.broker_cpu) as broker:
        raw = broker.workdir / "profile.txt"
        duration = int(args.warmup + args.duration + 3)
        spy = subprocess.Popen(
            pinned(
                args.loadgen_cpu,
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(broker.pid),
                    "--duration",
                    str(duration),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--function",
                    "--output",
                    str(raw),
                    *(["--native"] if args.native else ["--nonblocking"]),
                ],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
        try:
            result = run_loadgen(broker, args, "s1")
        finally:
            try:
                _, err = spy.communicate(timeout=duration + 30)
            except subprocess.TimeoutExpired:
                os.kill(spy.pid, signal.SIGKILL)
                _, err = spy.communicate(timeout=5)
        if not raw.exists():
            return [f"py-spy failed: {err.decode(errors='replace')[-500:]}"]
        own, total, samples = collections.Counter(), collections.Counter(), 0
        for line in raw.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [frame.strip() for frame in stack.split(";") if frame.strip()]
            frames = [frame for frame in frames if not frame.startswith("process ") and not frame.startswith("thread ")]
            if not frames:
                continue
            samples += count
            own[frames[-1]] += count
            for frame in set(frames):
                total[frame] += count
        s1 = result["s1"]
        lines.append(
            f"py-spy `record --rate 250 --function {'--native' if args.native else '--nonblocking'}` on fastport "
            f"(compiled), S1 under the profiler: {s1['deliveries_per_s']:,.0f} deliveries/s, "
            f"{s1['cpu_us_per_delivery']:.2f} µs broker CPU per delivery, {samples} samples."
        )
        lines.append("")
        lines.append(
            "Percentages are of the samples in which the broker was running (py-spy drops idle samples), "
            "so they are shares of the broker's CPU time. Self time in `Runner.run` (without `--native`) "
            "is time in the event loop's C code: uvloop, picows, socket reads and writes."
        )
        lines.append("")
        lines.append("| own (self) % | function (file:first line) | inclusive % |")
        lines.append("|---:|---|---:|")
        for frame, count in own.most_common(args.profile_top):
            lines.append(f"| {100 * count / samples:.1f} | `{frame}` | {100 * total[frame] / samples:.1f} |")
        lines.append("")
        lines.append(
            "Inclusive time of the fastport functions on the hot path (a frame's share of all samples, "
            "children included):"
        )
        lines.append("")
        lines.append("| inclusive % | function |")
        lines.append("|---:|---|")
        entry = ("main (", "_serve (", "<module> (", "run (fastport/server/app.py")
        ours = [
            (frame, count)
            for frame, count in total.most_common()
            if "fastport" in frame and not frame.startswith(entry)
        ]
        for frame, count in ours[: args.profile_top]:
            lines.append(f"| {100 * count / samples:.1f} | `{frame}` |")
    return lines


# -- report ---------------------------------------------------------------------------------------------------


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def machine_info() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fastport": first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "dirty": "yes"
        if first_line(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]) not in ("", "unknown")
        else "no",
        "mosquitto": first_line([MOSQUITTO, "-h"]),
        "nats": first_line([NATS, "--version"]),
        "picows": version("picows"),
        "uvloop": version("uvloop"),
        "orjson": version("orjson"),
    }


def stats(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def fmt(values: list[float], digits: int = 0) -> str:
    if not values:
        return "—"
    low, mid, high = stats(values)
    spec = f",.{digits}f"
    if len(values) == 1:
        return format(mid, spec)
    return f"{mid:{spec}} ({low:{spec}}–{high:{spec}})"


def ratio(mine: list[float], theirs: list[float]) -> str:
    if not mine or not theirs or statistics.median(theirs) == 0:
        return "—"
    return f"{statistics.median(mine) / statistics.median(theirs):.2f}×"


def collect(results: dict[str, list[dict[str, Any]]], name: str, *path: str) -> list[float]:
    values = []
    for run in results.get(name, []):
        node: Any = run
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (int, float)):
            values.append(float(node))
    return values


def table(
    results: dict[str, list[dict[str, Any]]],
    brokers: list[str],
    columns: list[tuple[str, tuple[str, ...], int]],
    ratio_path: tuple[str, ...],
    ratio_label: str,
) -> list[str]:
    peers = [peer for peer in PEERS if peer in brokers]
    head = ["broker", *[title for title, _, _ in columns], *[f"{ratio_label} vs {peer}" for peer in peers]]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name in brokers:
        cells = [LABELS[name]]
        cells += [fmt(collect(results, name, *path), digits) for _, path, digits in columns]
        mine = collect(results, name, *ratio_path)
        cells += [ratio(mine, collect(results, peer, *ratio_path)) if peer != name else "1.00×" for peer in peers]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def bound_note(results: dict[str, list[dict[str, Any]]], brokers: list[str], path: tuple[str, ...]) -> list[str]:
    """A sentence naming the brokers whose runs were paced by the load generator (its CPU ≥ 90%)."""
    bound = [
        LABELS[name]
        for name in brokers
        if (values := collect(results, name, *path)) and statistics.median(values) >= 90.0
    ]
    if not bound:
        return ["", "The load generator stayed below 90% CPU in every row: the broker set the pace."]
    return [
        "",
        (
            f"Load generator bound (its CPU ≥ 90%, so throughput there is a floor and CPU per delivery the "
            f"comparable number): {', '.join(bound)}."
        ),
    ]


def target_lines(results: dict[str, list[dict[str, Any]]], name: str) -> list[str]:
    lines: list[str] = []

    def med(broker: str, *path: str) -> float | None:
        values = collect(results, broker, *path)
        return statistics.median(values) if values else None

    def check(title: str, mine: float | None, goal: float | None, lower_is_better: bool, unit: str) -> None:
        if mine is None or goal is None:
            lines.append(f"- {title}: not measured in this run.")
            return
        met = mine <= goal if lower_is_better else mine >= goal
        gap = (mine / goal - 1) * 100 if goal else 0.0
        verdict = "**met**" if met else f"**missed** by {abs(gap):.0f}%"
        lines.append(f"- {title}: {mine:,.2f} {unit} vs target {goal:,.2f} {unit} — {verdict}.")

    mosq_cpu = med("mosquitto", "s1", "cpu_us_per_delivery")
    check(
        f"S1 broker CPU per delivery ≤ ½ Mosquitto QoS 1's ({LABELS[name]})",
        med(name, "s1", "cpu_us_per_delivery"),
        None if mosq_cpu is None else mosq_cpu / 2,
        True,
        "µs",
    )
    check(
        f"S3 window-64 throughput ≥ Mosquitto QoS 1's ({LABELS[name]})",
        med(name, "s3", "64", "messages_per_s"),
        med("mosquitto", "s3", "64", "messages_per_s"),
        False,
        "msg/s",
    )
    split = next((key for run in results.get(name, []) for key in run.get("s3", {}) if "x" in key), None)
    if split:
        check(
            f"S3 window 64 over {split.split('x')[1]} publishers ≥ Mosquitto QoS 1's, same split ({LABELS[name]}; "
            "not capped by the per-connection publish limit)",
            med(name, "s3", split, "messages_per_s"),
            med("mosquitto", "s3", split, "messages_per_s"),
            False,
            "msg/s",
        )
    check(
        f"S2 p50 latency ≤ Mosquitto's ({LABELS[name]})",
        med(name, "s2", "p50_us"),
        med("mosquitto", "s2", "p50_us"),
        True,
        "µs",
    )
    check(f"S4 ≤ 8 KiB per idle connection ({LABELS[name]})", med(name, "s4", "kib_per_connection"), 8.0, True, "KiB")
    return lines


def write_report(
    path: Path,
    args: argparse.Namespace,
    info: dict[str, str],
    brokers: list[str],
    results: dict[str, list[dict[str, Any]]],
    micro: str,
    profile: list[str],
    memory: list[str],
    load: tuple[str, str],
    wall_s: float,
    notes: list[str],
) -> None:
    runs = {name: len(results.get(name, [])) for name in brokers}
    out: list[str] = ["# fastport benchmark results", ""]
    out.append(
        f"Written by `python bench/run.py {' '.join(sys.argv[1:])}` on "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC} in {wall_s / 60:.1f} min. "
        "Cells are **median (min–max)** over the runs; ratio columns compare medians."
    )
    out += [
        "",
        "## Machine and versions",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores; Linux {info['kernel']}",
        (
            f"- broker pinned to CPU {args.broker_cpu}, the one load generator process to CPU {args.loadgen_cpu} "
            "(`taskset`)"
        ),
        f"- load average (1/5/15 min) at start: {load[0]}; at end: {load[1]}",
        f"- Python {info['python']}, picows {info['picows']}, uvloop {info['uvloop']}, orjson {info['orjson']}",
        f"- fastport git {info['fastport']}" + (" (with uncommitted changes)" if info["dirty"] == "yes" else ""),
        f"- {info['mosquitto']}; nats-server {info['nats']}",
        f"- runs per broker: {', '.join(f'{LABELS[n]} {c}' for n, c in runs.items())}",
        "",
    ]
    out += [f"- {note}" for note in notes]
    if notes:
        out.append("")
    out += [
        "## What is measured",
        "",
        (
            "See `bench/loadgen.py`'s docstring for the exact definitions. In short: all traffic is WebSocket on "
            "127.0.0.1; fastport speaks its JSON frames, Mosquitto MQTT 3.1.1 (subprotocol `mqtt`), NATS its text "
            "protocol. **Broker CPU** is utime+stime of the broker process over the measured window "
            "(`/proc/PID/stat`), divided by deliveries. **Load generator CPU %** near 100 means the load generator, "
            "not the broker, set the pace (one Python process saturates near 220k fastport deliveries/s); a broker "
            "that is not saturated handles smaller batches per loop iteration and spends more CPU per delivery than "
            "it would at full load. Subscribers send one ack frame per delivery, and the acks answering one read "
            "leave in one write (`bench/README.md`). NATS core has no "
            "acknowledgements: its rows are fire-and-forget (S3: request/reply), so they are a lower bound on cost, "
            "not like for like."
        ),
        "",
    ]
    if "s1" in args.scenario_list:
        out += [
            f"## S1 fan-out: 1 publisher → {args.subscribers} subscribers, 256 B, window {args.window}, at-least-once",
            "",
            (
                "A message completes when the broker confirmed it to the publisher and every subscriber got it; "
                "fastport subscribers ack each message, MQTT is QoS 1 both ways (PUBACKs)."
            ),
            "",
        ]
        out += table(
            results,
            brokers,
            [
                ("deliveries/s", ("s1", "deliveries_per_s"), 0),
                ("broker CPU µs/delivery", ("s1", "cpu_us_per_delivery"), 2),
                ("load gen CPU %", ("s1", "loadgen_cpu_pct"), 0),
            ],
            ("s1", "cpu_us_per_delivery"),
            "CPU/delivery",
        )
        out += bound_note(results, brokers, ("s1", "loadgen_cpu_pct"))
        out.append("")
    if "s2" in args.scenario_list:
        out += [
            f"## S2 latency: {args.rate:.0f} msg/s to 10 subscribers for {args.latency_duration:.0f} s",
            "",
            "Publish-to-delivery time from a monotonic timestamp in the payload; acks on as in S1.",
            "",
        ]
        out += table(
            results,
            brokers,
            [
                ("p50 µs", ("s2", "p50_us"), 0),
                ("p99 µs", ("s2", "p99_us"), 0),
                ("p99.9 µs", ("s2", "p999_us"), 0),
                ("broker CPU µs/delivery", ("s2", "cpu_us_per_delivery"), 2),
            ],
            ("s2", "p50_us"),
            "p50",
        )
        out.append("")
    if "s3" in args.scenario_list:
        out += [
            "## S3 acknowledged round trip, 1 publisher → 1 subscriber",
            "",
            (
                "fastport: publish → message → ack → `ack_received`. MQTT: there is no end-to-end ack, so the "
                "subscriber answers each QoS 1 message with a QoS 1 publish on the publisher's reply topic "
                "(same four hops, PUBACKs on each leg). NATS: request/reply, no acks. The window is the number "
                "of messages the publisher keeps unconfirmed."
            ),
            "",
        ]
        split = f"64x{args.split_publishers}"
        for window in ("1", "64", split):
            if window == split:
                if args.split_publishers <= 1:
                    continue
                out += [
                    f"### window 64 over {args.split_publishers} publishers ({64 // args.split_publishers} each)",
                    "",
                    (
                        "The same 64 messages in flight, spread over several publisher connections: with fastport's "
                        "per-connection publish limit this shows what the engine does when one connection is not "
                        "the cap."
                    ),
                    "",
                ]
            else:
                out += [f"### window {window}", ""]
            out += table(
                results,
                brokers,
                [
                    ("messages/s", ("s3", window, "messages_per_s"), 0),
                    ("p50 µs", ("s3", window, "p50_us"), 0),
                    ("p99 µs", ("s3", window, "p99_us"), 0),
                    ("broker CPU µs/message", ("s3", window, "cpu_us_per_message"), 2),
                    ("load gen CPU %", ("s3", window, "loadgen_cpu_pct"), 0),
                ],
                ("s3", window, "messages_per_s"),
                "msg/s",
            )
            out += bound_note(results, brokers, ("s3", window, "loadgen_cpu_pct"))
            out.append("")
    if "s4" in args.scenario_list or "s5" in args.scenario_list:
        out += [
            f"## S4 memory: {args.connections:,} idle, authenticated, subscribed connections",
            "",
            "Broker RSS growth (`VmRSS`) / connections, each with its own topic subscription, after a settle time.",
            "",
        ]
        out += table(
            results,
            brokers,
            [
                ("connections", ("s4", "connections"), 0),
                ("KiB/connection", ("s4", "kib_per_connection"), 2),
                ("RSS before MiB", ("s4", "rss_before_mib"), 1),
                ("RSS after MiB", ("s4", "rss_after_mib"), 1),
            ],
            ("s4", "kib_per_connection"),
            "KiB",
        )
        out += [
            "",
            "## S5 connection storm",
            "",
            (
                f"The connect phase of S4: {args.connections:,} WebSocket handshakes + authentication "
                "(fastport `init`, MQTT CONNECT/CONNACK, NATS CONNECT + PING/PONG), at most 100 in progress."
            ),
            "",
        ]
        out += table(
            results,
            brokers,
            [
                ("connections/s", ("s4", "storm_per_s"), 0),
                ("broker CPU µs/connection", ("s4", "storm_cpu_us_per_connection"), 0),
                ("load gen CPU %", ("s4", "storm_loadgen_cpu_pct"), 0),
            ],
            ("s4", "storm_per_s"),
            "conn/s",
        )
        out.append("")
    out += ["## Targets (reported, not asserted)", ""]
    for name in brokers:
        if name.startswith("fastport") and "mosquitto" in brokers:
            out += target_lines(results, name)
    out.append("")
    if profile:
        out += ["## Profile of fastport S1 (where the CPU goes)", "", *profile, ""]
    if memory:
        out += ["## Memory profile of fastport connections (`python bench/memprofile.py`)", "", *memory, ""]
    if micro:
        out += ["## Micro-benchmarks of the `_speedups` twins (`python bench/micro.py`)", "", micro.strip(), ""]
    out += [
        "## Raw results",
        "",
        "<details><summary>JSON per broker and run</summary>",
        "",
        "```json",
        json.dumps(results, indent=1, sort_keys=True),
        "```",
        "",
        "</details>",
        "",
    ]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def load_average() -> str:
    with contextlib.suppress(OSError), open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3])
    return "unknown"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default=",".join(BROKERS), help=f"comma list of {', '.join(BROKERS)}")
    parser.add_argument(
        "--scenarios",
        default="s1,s2,s3,s4",
        help="comma list of s1..s7 (s4 and s5 run together; s6/s7 are appended to --output)",
    )
    parser.add_argument("--s6-window", type=int, default=64, help="S6 publish window (default 64)")
    parser.add_argument("--runs", type=int, default=3, help="runs per broker (fresh broker each run; default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="S1 measured seconds (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before each window")
    parser.add_argument("--window", type=int, default=256, help="S1 publish window (default 256)")
    parser.add_argument("--subscribers", type=int, default=50, help="S1 subscribers (default 50)")
    parser.add_argument("--rate", type=float, default=1000.0, help="S2 messages/s (default 1000)")
    parser.add_argument("--latency-duration", type=float, default=5.0, help="S2 measured seconds (default 5)")
    parser.add_argument("--roundtrip-duration", type=float, default=3.0, help="S3 seconds per window (default 3)")
    parser.add_argument(
        "--split-publishers",
        type=int,
        default=8,
        help="S3: also run window 64 split over this many publishers (1: skip; default 8)",
    )
    parser.add_argument("--connections", type=int, default=10_000, help="S4/S5 connections (default 10000)")
    parser.add_argument(
        "--publish-cap",
        type=float,
        default=-1.0,
        help="pace each fastport publisher to this many publishes/s (default: 98%% of the broker's "
        "per-connection publish rate limit; 0: no pacing)",
    )
    parser.add_argument("--broker-cpu", type=int, default=1)
    parser.add_argument("--loadgen-cpu", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="limit for one load generator process (s)")
    parser.add_argument("--no-micro", dest="micro", action="store_false", help="skip bench/micro.py")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the py-spy profile")
    parser.add_argument(
        "--no-memprofile",
        dest="memprofile",
        action="store_false",
        help="skip bench/memprofile.py (tracemalloc per connection)",
    )
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames of Cython/picows too)")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="smoke settings: 1 run, 2 s windows, 1,000 connections")
    parser.add_argument("--note", action="append", default=[], help="a line for RESULTS.md (e.g. machine busy)")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration, args.latency_duration, args.roundtrip_duration = 1, 2.0, 2.0, 2.0
        args.connections = 1000
    args.scenario_list = args.scenarios.split(",")
    args.publish_limit = fastport_publish_limit()
    if args.publish_cap < 0:
        args.publish_cap = 0.98 * args.publish_limit
    return args


def main() -> None:
    args = parse_args()
    brokers = [name for name in args.brokers.split(",") if name]
    unknown = set(brokers) - set(BROKERS)
    if unknown:
        raise SystemExit(f"unknown broker(s): {', '.join(sorted(unknown))}")
    scenarios = ",".join(
        s for s in ("s1", "s2", "s3", "s4") if s in args.scenario_list or (s == "s4" and "s5" in args.scenario_list)
    )
    started = time.monotonic()
    load_start = load_average()
    if "s6" in args.scenario_list or "s7" in args.scenario_list:
        extra, failures = run_extra(args)
        lines = extra_report(
            args, extra, failures, (load_start, load_average()), time.monotonic() - started, list(args.note)
        )
        if scenarios:  # S1-S5 rewrite the file below: keep these sections for after it
            args.extra_lines = lines
        else:
            with args.output.open("a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
            print(f"appended S6/S7 to {args.output}", file=sys.stderr)
            return
    info = machine_info()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in brokers}
    notes = list(args.note)
    if args.publish_cap:
        notes.append(
            f"fastport publishers are paced to ≤ {args.publish_cap:,.0f} publishes/s per connection: fastport "
            f"refuses publishes over its default per-connection publish rate limit "
            f"({args.publish_limit:,.0f}/s, `BrokerLimits.publish_rate_per_s`, not settable from "
            "`fastport serve` at this commit) and closes a connection that keeps trying. A fastport S1 or "
            "S3 row at that rate measures the limit, not the engine."
        )
    for run in range(args.runs):
        for name in brokers:
            print(f"[run {run + 1}/{args.runs}] {name}: {scenarios}", file=sys.stderr, flush=True)
            try:
                result: dict[str, Any] = {}
                traffic = ",".join(s for s in scenarios.split(",") if s != "s4")
                if traffic:
                    with broker_running(name, args.broker_cpu) as broker:
                        result.update(run_loadgen(broker, args, traffic))
                if "s4" in scenarios:  # on a fresh broker: memory freed by earlier traffic would hide the cost
                    with broker_running(name, args.broker_cpu) as broker:
                        result.update(run_loadgen(broker, args, "s4"))
                results[name].append(result)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                message = f"run {run + 1} of {name} failed: {str(exc).splitlines()[0]}"
                print(message, file=sys.stderr, flush=True)
                notes.append(message)
    micro = ""
    if args.micro:
        print("micro-benchmarks", file=sys.stderr, flush=True)
        out = subprocess.run(
            pinned(args.broker_cpu, [sys.executable, str(HERE / "micro.py"), "--markdown"]),
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        micro = out.stdout if out.returncode == 0 else f"micro.py failed:\n```\n{out.stderr[-2000:]}\n```"
    memory: list[str] = []
    if args.memprofile and "fastport" in brokers and "s4" in scenarios:
        print("memory profile: fastport connections under tracemalloc", file=sys.stderr, flush=True)
        out = subprocess.run(
            pinned(
                args.broker_cpu,
                [
                    sys.executable,
                    str(HERE / "memprofile.py"),
                    "--connections",
                    str(min(args.connections, 2000)),
                    "--loadgen-cpu",
                    str(args.loadgen_cpu),
                ],
            ),
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=raise_nofile,
        )
        memory = (out.stdout if out.returncode == 0 else f"memprofile.py failed:\n{out.stderr[-2000:]}").splitlines()
    profile: list[str] = []
    if args.profile and "fastport" in brokers and "s1" in args.scenario_list:
        print("profile: fastport S1 under py-spy", file=sys.stderr, flush=True)
        try:
            profile = profile_fanout(args)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            profile = [f"profiling failed: {exc}"]
    write_report(
        args.output,
        args,
        info,
        brokers,
        results,
        micro,
        profile,
        memory,
        (load_start, load_average()),
        time.monotonic() - started,
        notes,
    )
    if getattr(args, "extra_lines", None):
        with args.output.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(args.extra_lines) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
