"""Micro-benchmarks of the ``_speedups`` twins: ops/s of the compiled and pure-Python TopicTrie and TimerWheel.

Usage: ``python bench/micro.py [--markdown] [--repeat 5] [--scale 1.0]``. Each operation runs ``--repeat`` times on
fresh inputs from a fixed seed, in rounds alternating between the twins; the best time counts (the least disturbed
by other processes). The ratio column is compiled ops/s / Python ops/s (target: at least 5x). Both twins are
imported directly, as only tests and benchmarks may.

Every operation is called from a Python loop, in both twins, and that loop and call cost the same for both: the
``call overhead`` row times the same loop calling a C method that does nothing useful (``dict.get`` on an empty
dict). A compiled operation cannot run faster than that, so the raw ratio of a cheap operation is capped near
(Python twin time / call overhead); the ``net`` column divides the two twins' times after subtracting it, which is
how much faster the operation's own work is.

Workloads:

- trie: 2,000 filters over a 3-level topic tree (70% exact, 20% with ``+``, 10% ending in ``#``), 2 subscribers
  each; ``subscribe`` and ``unsubscribe`` of all of them; ``match`` of 20,000 concrete topics (about 6 matches each);
  ``match (fan-out 50)``: one topic held by 50 subscribers.
- timer wheel: ``schedule`` 50,000 timers 1 ms-60 s ahead (the retry/expiry mix); ``cancel`` all of them (the
  common case: messages get acked); ``schedule+advance``: 50,000 timers within 5 s, then advance in 1 ms steps
  firing them all.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from fastport._speedups import timerwheel_py, trie_py

try:
    from fastport._speedups import timerwheel_c, trie_c
except ImportError:  # no compiled build: report the Python twins only
    timerwheel_c = trie_c = None  # type: ignore[assignment]

SEED = 8


def best_of(repeat: int, prepare: Callable[[], Any], run: Callable[[Any], int]) -> float:
    """Best ops/s of ``run(prepare())`` over ``repeat`` rounds; ``run`` returns its operation count."""
    best = 0.0
    for _ in range(repeat):
        state = prepare()
        started = time.perf_counter()
        ops = run(state)
        elapsed = time.perf_counter() - started
        best = max(best, ops / elapsed)
    return best


def trie_workloads(module: ModuleType, scale: float, repeat: int) -> dict[str, float]:
    rng = random.Random(SEED)
    levels = [[f"l{d}n{i}" for i in range(12)] for d in range(3)]
    filters: list[str] = []
    for _ in range(int(2000 * scale)):
        parts = [rng.choice(level) for level in levels]
        kind = rng.random()
        if kind < 0.2:
            parts[rng.randrange(3)] = "+"
        elif kind < 0.3:
            parts = [*parts[: rng.randrange(1, 3)], "#"]
        filters.append("/".join(parts))
    topics = ["/".join(rng.choice(level) for level in levels) for _ in range(int(20000 * scale))]
    subscribers = [object() for _ in range(2)]
    pairs = [(f, s) for f in filters for s in subscribers]

    def filled() -> Any:
        trie = module.TopicTrie()
        for topic_filter, subscriber in pairs:
            trie.subscribe(topic_filter, subscriber, 1)
        return trie

    def subscribe(trie: Any) -> int:
        for topic_filter, subscriber in pairs:
            trie.subscribe(topic_filter, subscriber, 1)
        return len(pairs)

    def unsubscribe(trie: Any) -> int:
        for topic_filter, subscriber in pairs:
            trie.unsubscribe(topic_filter, subscriber)
        return len(pairs)

    def match(trie: Any) -> int:
        match_ = trie.match
        for topic in topics:
            match_(topic)
        return len(topics)

    def fanout_trie() -> Any:
        trie = module.TopicTrie()
        for _ in range(50):
            trie.subscribe("bench/fanout", object(), 1)
        return trie

    def match_fanout(trie: Any) -> int:
        match_ = trie.match
        n = int(20000 * scale)
        for _ in range(n):
            match_("bench/fanout")
        return n

    return {
        "trie subscribe": best_of(repeat, module.TopicTrie, subscribe),
        "trie unsubscribe": best_of(repeat, filled, unsubscribe),
        "trie match": best_of(repeat, filled, match),
        "trie match (fan-out 50)": best_of(repeat, fanout_trie, match_fanout),
    }


def wheel_workloads(module: ModuleType, scale: float, repeat: int) -> dict[str, float]:
    rng = random.Random(SEED)
    n = int(50000 * scale)
    far = [rng.randrange(1, 60_000) for _ in range(n)]
    near = [rng.randrange(1, 5_000) for _ in range(n)]
    start_ms = 1_700_000_000_000

    def schedule(wheel: Any) -> int:
        schedule_ = wheel.schedule
        for delay in far:
            schedule_(start_ms + delay, delay)
        return n

    def scheduled() -> tuple[Any, list[int]]:
        wheel = module.TimerWheel(start_ms)
        return wheel, [wheel.schedule(start_ms + delay, delay) for delay in far]

    def cancel(state: tuple[Any, list[int]]) -> int:
        wheel, handles = state
        cancel_ = wheel.cancel
        for handle in handles:
            cancel_(handle)
        return n

    def schedule_advance(wheel: Any) -> int:
        schedule_ = wheel.schedule
        for delay in near:
            schedule_(start_ms + delay, delay)
        fired = 0
        advance = wheel.advance
        for now in range(start_ms + 1, start_ms + 5_001):
            fired += len(advance(now))
        assert fired == n, fired
        return n

    def fresh() -> Any:
        return module.TimerWheel(start_ms)

    return {
        "wheel schedule": best_of(repeat, fresh, schedule),
        "wheel cancel": best_of(repeat, scheduled, cancel),
        "wheel schedule+advance (fire all)": best_of(repeat, fresh, schedule_advance),
    }


def call_overhead_ns(scale: float, repeat: int) -> float:
    """Nanoseconds of one iteration of a benchmark loop calling a do-nothing C method with two arguments."""
    n = int(50000 * scale)
    keys = list(range(n))
    empty_get = {}.get

    def loop(_: Any) -> int:
        for key in keys:
            empty_get(key, key)
        return n

    return 1e9 / best_of(repeat, lambda: None, loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for RESULTS.md)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload size")
    args = parser.parse_args()
    # Rounds alternate between the twins, so a slow spell of a shared machine hits both alike.
    python: dict[str, float] = {}
    compiled: dict[str, float] = {}
    twins = [(python, trie_py, timerwheel_py)]
    if trie_c is not None and timerwheel_c is not None:
        twins.append((compiled, trie_c, timerwheel_c))
    for _ in range(args.repeat):
        for best, trie_module, wheel_module in twins:
            round_ = {**trie_workloads(trie_module, args.scale, 1), **wheel_workloads(wheel_module, args.scale, 1)}
            for name, ops in round_.items():
                best[name] = max(best.get(name, 0.0), ops)
    overhead_ns = call_overhead_ns(args.scale, args.repeat)
    rows = []
    for name, py_ops in python.items():
        c_ops = compiled.get(name)
        ratio = net = verdict = "—"
        if c_ops:
            ratio = f"{c_ops / py_ops:.1f}×"
            py_work, c_work = 1e9 / py_ops - overhead_ns, 1e9 / c_ops - overhead_ns
            net = f"{py_work / c_work:.1f}×" if c_work > 0 else "∞"
            verdict = "yes" if c_ops / py_ops >= 5 else "**no**"
        rows.append((name, f"{c_ops:,.0f}" if c_ops else "—", f"{py_ops:,.0f}", ratio, net, verdict))
    if args.markdown:
        print(
            f"Best of {args.repeat} rounds, scale {args.scale}, Python {sys.version.split()[0]}; call overhead "
            f"{overhead_ns:.0f} ns per operation (see `bench/micro.py`)."
        )
        print()
        print("| operation | compiled ops/s | Python ops/s | compiled / Python | net of call overhead | ≥ 5× |")
        print("|---|---:|---:|---:|---:|:---:|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        width = max(len(row[0]) for row in rows)
        print(f"call overhead: {overhead_ns:.0f} ns per operation")
        print(f"{'operation':<{width}}  {'compiled ops/s':>15}  {'python ops/s':>13}  ratio  net")
        for name, c_ops, py_ops, ratio, net, _ in rows:
            print(f"{name:<{width}}  {c_ops:>15}  {py_ops:>13}  {ratio:>5}  {net}")


if __name__ == "__main__":
    main()
