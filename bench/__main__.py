"""Run the four benchmarks of the rate-limit issue and print their figures.

python -m bench [--quick] [--only 1,2,3,4]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import subprocess
import sys
import time

import redis

from bench.common import (
    BENCH_REDIS,
    DEFAULT_CONCURRENCY,
    SimProcess,
    Walk,
    run_sync,
    runtime_for,
    timed_walk,
    worker_process,
)
from bench.shim import (
    bench_cached_pages,
    bench_health_under_polls,
    bench_lanes,
    bench_wait_latency,
)


def bench_requests(quick: bool) -> None:
    """1. Requests for a full sync versus the minimum ceil(N/250) plus the accounts pages."""
    print("\n1. requests sent for a full sync (accounts + companies) vs the minimum")
    sizes = [1_234, 10_000] if quick else [1_234, 10_000, 25_001]
    with SimProcess(["--accounts", "0"]) as sim:
        for n in sizes:
            account = sim.add_account(sim.key, n)
            sim.reset()
            rt = runtime_for(sim.base_url)
            run_sync(rt, sim.key, None)
            _, outcome = run_sync(rt, sim.key, account)
            sent = sim.stats()["requests"]
            accounts_pages = math.ceil(len(sim.keys[sim.key] or [account]) / 250) or 1
            minimum = math.ceil(n / 250) + accounts_pages
            print(
                f"   N={n:>6}: sent {sent:>4}, minimum {minimum:>4}  "
                f"(records stored {outcome.result['counts']['records']})"
            )


def bench_parallel(quick: bool) -> None:
    """2. A 10,000-company walk at 100 ms latency: the default concurrency vs sequential."""
    n, runs = 10_000, 1 if quick else 3
    pages = math.ceil(n / 250)
    print(
        f"\n2. {n:,}-company walk, 100 ms simulated latency: parallel vs sequential, in one "
        f"run\n   (each the median of {runs} walks; CPU: the client's per record, the "
        "simulator's per page)"
    )
    with SimProcess(["--accounts", "0", "--latency", "100"]) as sim:
        account = sim.add_account(sim.key, n)
        rt = runtime_for(sim.base_url)
        timed_walk(sim, rt.client(sim.key), account)  # the simulator builds the account now
        rows: dict[str, tuple[list[Walk], float]] = {}
        for label, concurrency in (
            ("sequential", 1),
            ("parallel (16)", 16),
            (f"parallel ({DEFAULT_CONCURRENCY}, default)", DEFAULT_CONCURRENCY),
        ):
            rt = runtime_for(sim.base_url, concurrency=concurrency)
            walks = sorted(timed_walk(sim, rt.client(sim.key), account) for _ in range(runs))
            full, outcome = run_sync(rt, sim.key, account)
            assert all(w.records == n for w in walks) and outcome.result["counts"]["records"] == n
            rows[label] = (walks, full)
        base_walks, base_full = rows["sequential"]
        base = base_walks[runs // 2].seconds
        for label, (walks, full) in rows.items():
            walk = walks[runs // 2]
            each = ", ".join(f"{base / w.seconds:.1f}x" for w in walks)
            sim_cpu = (
                f"{walk.simulator_cpu * 1e3 / pages:3.1f} ms/page"
                if walk.simulator_cpu is not None
                else "?"
            )
            print(
                f"   {label:<22} walk {walk.seconds:5.2f} s {base / walk.seconds:5.1f}x "
                f"(walks {each}); CPU client {walk.client_cpu * 1e6 / n:4.1f} us/record, "
                f"simulator {sim_cpu}"
            )
            print(
                f"   {'':<22} full sync into the in-process store {full:5.2f} s "
                f"{base_full / full:5.1f}x"
            )


def bench_shared_budget(quick: bool) -> None:
    """3. Four worker processes, 20 accounts on one key, under a simulated limit."""
    limit, window = 50, 10.0  # 300 a minute, as a 10-second window so a run takes ~30 s
    companies = 1_000 if quick else 2_000
    print(
        f"\n3. 4 worker processes, 20 accounts x {companies:,} companies on one key, "
        f"CallRail limit {limit} per {window:.0f} s (= {limit * 60 / window:.0f}/min)"
    )
    redis.Redis.from_url(BENCH_REDIS).flushdb()
    with SimProcess(["--accounts", "0", "--latency", "20"]) as sim:
        accounts = [sim.add_account(sim.key, companies) for _ in range(20)]
        sim.reset()
        sim.knobs(rate_limits=[[limit, window]])
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        shares = [accounts[i::4] for i in range(4)]
        started = time.perf_counter()
        procs = [
            ctx.Process(
                target=worker_process, args=(sim.base_url, sim.key, share, limit, window, out)
            )
            for share in shares
        ]
        for p in procs:
            p.start()
        waits = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(30)
        elapsed = time.perf_counter() - started
        log = sim.log()
    ok = [r for r in log if r["status"] == 200]
    limited = [r for r in log if r["status"] == 429]
    stamps = sorted(r["at"] for r in ok)
    # Starting with a fresh budget, n requests under `limit` per `window` cannot finish sooner
    # than (ceil(n / limit) - 1) windows after the first: compare the run with that.
    fastest = (math.ceil(len(ok) / limit) - 1) * window
    actual = stamps[-1] - stamps[0]
    print(f"   {len(ok)} requests answered 200, {len(limited)} answered 429 (goal 0)")
    print(
        f"   first to last request {actual:.1f} s; the limit allows no less than {fastest:.1f} s:"
        f" {fastest / actual:.0%} of the budget used (goal >= 90%)"
    )
    print(
        f"   wall time {elapsed:.1f} s; time spent waiting on the budget, all workers: "
        f"{sum(waits):.1f} s"
    )


def bench_memory(quick: bool) -> None:
    """4. Worker peak memory: a 50,000-company sync versus a 1,000-company sync."""
    sizes = [1_000, 10_000, 20_000 if quick else 50_000]
    print(f"\n4. worker peak memory by sync size {sizes} (a fresh process each; records go to a")
    print(
        "   discarding store, as they would to a remote MongoDB; the simulator is another process)"
    )
    with SimProcess(["--accounts", "0"]) as sim:
        results = {}
        for n in sizes:
            account = sim.add_account(sim.key, n)
            code = "import sys; from bench.common import memory_child; memory_child(*sys.argv[1:])"
            child = subprocess.run(
                [sys.executable, "-c", code, sim.base_url, sim.key, account],
                capture_output=True,
                text=True,
                check=True,
            )
            results[n] = json.loads(child.stdout.strip().splitlines()[-1])
    base = results[sizes[0]]
    for n in sizes:
        r = results[n]
        print(
            f"   {n:>6,} companies: Python heap peak {r['peak'] / 2**20:5.1f} MiB "
            f"({r['peak'] / base['peak']:4.2f}x), max RSS {r['rss_kib'] / 1024:6.1f} MiB "
            f"({r['rss_kib'] / base['rss_kib']:4.2f}x), {r['seconds']:.1f} s"
        )
    print("   goal: the largest sync under 2x the 1,000-company one")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a fast look")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8")
    args = parser.parse_args()
    chosen = {int(x) for x in args.only.split(",")}
    benches = {
        1: bench_requests,
        2: bench_parallel,
        3: bench_shared_budget,
        4: bench_memory,
        5: bench_wait_latency,
        6: bench_health_under_polls,
        7: bench_cached_pages,
        8: bench_lanes,
    }
    for number, bench in benches.items():
        if number in chosen:
            bench(args.quick)


if __name__ == "__main__":
    main()
