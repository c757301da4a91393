"""Benchmarks 5–8: the frontend's path, on a stack of separate processes (SecantusDB, Redis,
the simulator, the shim under uvicorn, a Celery prefork worker, beat)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import requests
from bson import ObjectId

from api_shim.auth import DEV_SECRET, issue_token
from bench.common import BENCH_REDIS
from bench.load import Connection, Figures, hammer, probe
from callrail_sync.cli.processes import Part, free_port, http_ok
from callrail_sync.cli.stack import Stack, StackConfig
from callrail_sync.config import Settings
from callrail_sync.job import JobParams, JobType, Lane, NewJob
from celeryconfig import create_celery
from tasks.submit import submit
from tasks.table import CeleryQueue

P = "/v1/e/callrail"


@contextmanager
def stack(run_dir: Path, workers: int = 1, concurrency: int = 2) -> Iterator[Stack]:
    settings = Settings(mongo_url=None, redis_url=BENCH_REDIS, jwt_secret=DEV_SECRET)
    config = StackConfig(
        run_dir=run_dir,
        port=free_port(),
        workers=workers,
        concurrency=concurrency,
        shim_workers=1,
        flower=False,
        # No quota here: the backlogs below would spend CallRail's 1,000 an hour in seconds.
        env={
            "LOG_LEVEL": "WARNING",
            "SYNC_INTERVAL": "86400",
            "HOURLY_LIMIT": "1000000",
            "DAILY_LIMIT": "1000000",
        },
    )
    running = Stack(config, settings).start()
    try:
        yield running
    finally:
        running.stop()


def headers() -> dict[str, str]:
    owner = Settings(jwt_secret=DEV_SECRET).demo_account_id
    return {"Authorization": f"Bearer {issue_token(owner, DEV_SECRET)}"}


def bench_wait_latency(quick: bool) -> None:
    """5. Submit → final status seen through `?wait`, against the job's own duration."""
    runs = 15 if quick else 40
    print(f"\n5. submit to final status through ?wait (a one-request job, {runs} runs)")
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as s:
        total, own, told = [], [], []
        for _ in range(runs):
            started = time.perf_counter()
            answer = requests.get(f"{s.shim_url}{P}/accounts?refresh=true", headers=headers())
            job = answer.json()["data"]
            final = requests.get(
                f"{s.shim_url}{job['status_url']}?wait=20", headers=headers(), timeout=30
            )
            seen = time.time()
            total.append(time.perf_counter() - started)
            data = final.json()["data"]
            finished = datetime.fromisoformat(data["finished_at"]).timestamp()
            began = datetime.fromisoformat(data["started_at"]).timestamp()
            own.append(finished - began)
            told.append(seen - finished)
    ms = sorted(x * 1000 for x in total)
    print(
        f"   submit → seen succeeded: p50 {ms[len(ms) // 2]:.1f} ms, p90 "
        f"{ms[int(len(ms) * 0.9)]:.1f} ms (goal p50 < 30 ms)"
    )
    print(
        f"   of which the job itself ran p50 {sorted(own)[len(own) // 2] * 1000:.1f} ms; the "
        f"end reached the waiting poll p50 {sorted(told)[len(told) // 2] * 1000:.1f} ms after "
        "it was written"
    )


def bench_health_under_polls(quick: bool) -> None:
    """6. /healthz while 1,000 long polls wait, against /healthz alone, same run."""
    polls = 300 if quick else 1_000
    print(f"\n6. /healthz latency while {polls:,} long polls wait vs none")
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as s:
        owner = Settings(jwt_secret=DEV_SECRET).demo_account_id
        job, _ = s.stores().jobs.create(NewJob(owner=owner, type=JobType.SYNC_ACCOUNTS))
        alone = asyncio.run(probe(s.shim_url, "/healthz", 200))

        async def under_load() -> tuple[Figures, int]:
            conns = [Connection(s.shim_url) for _ in range(polls)]
            path = f"{P}/jobs/{job.id}?wait=30"
            waits = [asyncio.create_task(c.get(path, headers())) for c in conns]
            await asyncio.sleep(6.0)  # every poll is in, has read its job once, and waits
            figures = await probe(s.shim_url, "/healthz", 200)
            waiting = sum(1 for w in waits if not w.done())
            for w in waits:
                w.cancel()
            for c in conns:
                await c.close()
            return figures, waiting

        loaded, waiting = asyncio.run(under_load())
    print(f"   alone:          p50 {alone.p50:6.2f} ms  p99 {alone.pct(99):6.2f} ms")
    print(
        f"   {waiting:,} waiting: p50 {loaded.p50:6.2f} ms  p99 {loaded.pct(99):6.2f} ms "
        "(goal p99 < 50 ms)"
    )


BARE_APP = """
import json, os
from fastapi import FastAPI
from fastapi.responses import JSONResponse

def create_app() -> FastAPI:
    body = json.loads(open(os.environ["BENCH_BODY"]).read())
    app = FastAPI()

    @app.get("/page")
    async def page() -> JSONResponse:
        return JSONResponse(body)

    return app
"""


def bench_cached_pages(quick: bool) -> None:
    """7. Cached page reads against a bare FastAPI route with the same JSON, same uvicorn."""
    seconds = 4.0 if quick else 8.0
    print(f"\n7. page reads, {seconds:.0f} s each at 16 connections: our shim vs a bare route")
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as s:
        account = requests.get(f"{s.shim_url}{P}/accounts", headers=headers()).json()["data"]
        requests.get(f"{s.shim_url}{account['status_url']}?wait=20", headers=headers())
        callrail_account_id = requests.get(f"{s.shim_url}{P}/accounts", headers=headers()).json()[
            "data"
        ]["accounts"][0]["id"]
        listing = f"{P}/companies?account_id={callrail_account_id}&per_page=25&sort=name"
        first = requests.get(s.shim_url + listing, headers=headers()).json()["data"]
        requests.get(f"{s.shim_url}{first['status_url']}?wait=20", headers=headers())
        body = requests.get(s.shim_url + listing, headers=headers()).json()
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(body))
        (Path(tmp) / "bare_app.py").write_text(BARE_APP)
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "--factory", "bare_app:create_app"]
        argv += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
        env = {**os.environ, "BENCH_BODY": str(body_file), "PYTHONPATH": tmp}
        bare = Part("bare", argv, http_ok(f"http://127.0.0.1:{port}/page"), env=env)
        bare.start(Path(tmp)).wait_ready(30)
        bare_url = f"http://127.0.0.1:{port}"
        runs: dict[str, Figures] = {}
        try:
            for conns in (16, 2):  # saturating, then the latency of a lightly loaded server
                runs[f"bare route, {conns:>2} conn."] = asyncio.run(
                    hammer(bare_url, "/page", connections=conns, seconds=seconds)
                )
                runs[f"shim page,  {conns:>2} conn."] = asyncio.run(
                    hammer(
                        s.shim_url, listing, connections=conns, seconds=seconds, headers=headers()
                    )
                )
        finally:
            bare.stop()
    for label, f in runs.items():
        print(
            f"   {label}  {f.rate:6.0f} req/s  p50 {f.p50:5.2f} ms  p99 {f.pct(99):6.2f} ms"
            f"  errors {f.errors}"
        )
    ratio = runs["shim page,  16 conn."].rate / runs["bare route, 16 conn."].rate
    print(f"   shim / bare at 16 connections: {ratio:.0%} of the requests a second (goal >= 50%)")


def bench_lanes(quick: bool) -> None:
    """8. A user's refresh under a backlog of periodic syncs: own lane vs the periodic one."""
    backlog = 500 if quick else 2_000
    print(f"\n8. a user's refresh, submitted behind {backlog:,} periodic syncs: time to start")
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp), workers=1, concurrency=2) as s:
        settings = s.cli_settings()
        stores = s.stores()
        queue = CeleryQueue(create_celery(settings))
        owner = str(ObjectId())
        assert s.demo_key is not None
        stores.keys.set(owner, s.demo_key)
        results = {}
        for lane in (Lane.INTERACTIVE, Lane.PERIODIC):
            for n in range(backlog):  # accounts CallRail does not know: one request each
                params = JobParams(callrail_account_id=f"ACCbacklog{lane.value}{n}")
                submit(stores.jobs, queue, owner, JobType.SYNC_COMPANIES, params,
                       lane=Lane.PERIODIC)  # fmt: skip
            asked = time.time()
            mine, _ = submit(stores.jobs, queue, owner, JobType.SYNC_ACCOUNTS, JobParams(),
                             lane=lane)  # fmt: skip
            while (job := stores.jobs.get(mine.id)) is not None and not job.is_final:
                time.sleep(0.05)
            assert job is not None and job.started_at is not None
            results[lane] = job.started_at.timestamp() - asked
            while stores.jobs.count_active(owner, {JobType.SYNC_COMPANIES}):
                time.sleep(0.5)
    user, behind = results[Lane.INTERACTIVE], results[Lane.PERIODIC]
    print(f"   in the periodic queue (before lanes): started after {behind:6.2f} s")
    print(f"   in the user's lane:                   started after {user:6.2f} s (goal < 1 s)")
