"""Run the benchmarks and print their figures (docs/benchmarks.md lists them and what was seen).

python -m bench [--quick] [--only 1,2,9]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing

import redis

from bench.common import (
    BENCH_REDIS,
    DEFAULT_CONCURRENCY,
    SimProcess,
    Walk,
    bench_mongo,
    memory_in_child,
    run_sync,
    runtime_for,
    timed_walk,
    worker_process,
)
from bench.inbound import bench_inbound
from bench.shim import (
    bench_cached_pages,
    bench_health_under_polls,
    bench_lanes,
    bench_wait_latency,
)
from bench.simulator import bench_simulator
from bench.streams import bench_streams
from bench.tracking import bench_tracking


def bench_requests(quick: bool) -> None:
    """1. Requests for a full sync versus the minimum ceil(N/250) plus the accounts pages."""
    print("\n1. requests sent for a full sync (accounts + companies) vs the minimum")
    sizes = [1_234, 10_000] if quick else [1_234, 10_000, 25_001]
    with SimProcess(["--accounts", "0"]) as sim:
        for n in sizes:
            account = sim.control.add_account(sim.key, n)
            sim.control.reset()
            rt = runtime_for(sim.base_url)
            run_sync(rt, sim.key, None)
            _, outcome = run_sync(rt, sim.key, account)
            sent = sim.control.stats()["requests"]
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
        account = sim.control.add_account(sim.key, n)
        rt = runtime_for(sim.base_url)
        timed_walk(sim, rt.client(sim.key), account)  # the simulator builds the account now
        rows: dict[str, list[Walk]] = {}
        for label, concurrency in (
            ("sequential", 1),
            ("parallel (16)", 16),
            (f"parallel ({DEFAULT_CONCURRENCY}, default)", DEFAULT_CONCURRENCY),
        ):
            rt = runtime_for(sim.base_url, concurrency=concurrency)
            walks = sorted(timed_walk(sim, rt.client(sim.key), account) for _ in range(runs))
            assert all(w.records == n for w in walks)
            rows[label] = walks
        base = rows["sequential"][runs // 2].seconds
        for label, walks in rows.items():
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


def bench_shared_budget(quick: bool) -> None:
    """3. The request budget per CallRail account, under a simulated limit: one key on several
    accounts (each account its own budget), and two keys on one account (one budget)."""
    limit, window = 4, 4.0  # per account, scaled down so a run takes seconds, not hours
    companies = 1_500 if quick else 2_500
    pages = math.ceil(companies / 250)
    print(
        f"\n3. the budget per CallRail account: CallRail limit {limit} per {window:.0f} s per "
        f"account, {companies:,} companies ({pages} pages) an account, 20 ms latency"
    )
    with SimProcess(["--accounts", "0", "--latency", "20", "--keys", "2"]) as sim:
        key, other = list(sim.keys)
        accounts = [sim.control.add_account(key, companies) for _ in range(8)]
        sim.control.share(other, accounts[:1])
        scenarios = {
            "one key, 8 accounts, 4 processes": [(key, accounts[n::4]) for n in range(4)],
            "two keys, 1 account, 2 processes": [(key, accounts[:1]), (other, accounts[:1])],
        }
        for label, shares in scenarios.items():
            sim.control.reset()
            redis.Redis.from_url(BENCH_REDIS).flushdb()
            sim.control.knobs(rate_limits=[[limit, window]])
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            procs = [
                ctx.Process(
                    target=worker_process, args=(sim.base_url, k, share, limit, window, out)
                )
                for k, share in shares
            ]
            for p in procs:
                p.start()
            [out.get(timeout=600) for _ in procs]
            for p in procs:
                p.join(30)
            report(label, sim.control.log(), limit, window)


def report(label: str, log: list[dict[str, object]], limit: int, window: float) -> None:
    """429s, and how close each budget unit came to the fastest its limit allows."""
    ok = [r for r in log if r["status"] == 200]
    limited = sum(1 for r in log if r["status"] == 429)
    units: dict[str, list[float]] = {}
    for r in ok:
        units.setdefault(str(r["quota_unit"]), []).append(float(str(r["at"])))
    used = []
    for stamps in units.values():
        # n requests under `limit` per `window` cannot span less than (ceil(n/limit) - 1)
        # windows: compare each unit's span with that.
        fastest = (math.ceil(len(stamps) / limit) - 1) * window
        if fastest:
            used.append(fastest / (max(stamps) - min(stamps)))
    print(
        f"   {label}: {len(ok)} requests answered 200 over {len(units)} budget units, "
        f"{limited} answered 429 (goal 0); busiest units used {max(used):.0%}, least "
        f"{min(used):.0%} of what their limit allows (goal >= 90% where a unit is the bottleneck)"
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
            account = sim.control.add_account(sim.key, n)
            results[n] = memory_in_child("bench.common", sim, account)
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
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10,11,12")
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
        9: bench_inbound,
        10: bench_tracking,
        11: bench_streams,
        12: bench_simulator,
    }
    with bench_mongo():
        for number, bench in benches.items():
            if number in chosen:
                bench(args.quick)


if __name__ == "__main__":
    main()
