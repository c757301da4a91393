"""Benchmark 9: CallRail's deliveries to our receiver under load, on the stack of separate
processes (the shim under uvicorn, a Celery prefork worker normalizing, SecantusDB, Redis).

Two rounds of the same load, in one run: first with nothing else running (the baseline), then
while a 20,000-company sync runs on the same worker and store. Each round sends 1,000
deliveries from 50 concurrent senders on keep-alive connections: 80% genuine and new, 10% a
genuine one sent again, 10% forged (signed with another key), in a shuffled order. The
receivers are registered in the store directly (the hot path never calls CallRail).
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis
import requests

from api_shim.auth import DEV_SECRET
from bench.common import BENCH_REDIS
from bench.load import Connection, Figures
from bench.shim import P, headers, stack
from callrail_sync.callrail import deliveries
from callrail_sync.callrail.deliveries import sign
from callrail_sync.config import Settings
from callrail_sync.stores import Stores
from callrail_sync.stores.receivers import Registration
from simulator.control import SimControl

KEY, FORGER = "9c1d0e2f3a4b5c6d7e8f9a0b1c2d3e4f", "0" * 32
COMPANIES = [f"COMbench{n:04d}" for n in range(20)]
SENDERS = 50
Send = tuple[str, str, bytes]
Round = tuple[list[Send], dict[str, Figures], str]
"""A round's deliveries, the answer times by kind, and how the sync stood at its end."""


def sends_for(round_name: str, total: int, rng: random.Random) -> list[Send]:
    """(kind, company, body) to send: genuine, duplicate (a genuine one again) or forged."""
    genuine_n, dup_n = int(total * 0.8), int(total * 0.1)
    genuine = []
    for n in range(genuine_n):
        payload = {
            "resource_id": f"CAL{round_name}{n:05d}",
            "duration": rng.randint(0, 600),
            "answered": True,
            "customer_phone_number": f"+1555{n:07d}",
            "start_time": "2026-12-06T10:00:00-05:00",
        }
        genuine.append(("genuine", rng.choice(COMPANIES), json.dumps(payload).encode()))
    duplicates = [("duplicate", c, b) for _, c, b in rng.sample(genuine, dup_n)]
    forged = []
    for n in range(total - genuine_n - dup_n):
        body = json.dumps({"resource_id": f"CALforged{round_name}{n}", "duration": 1}).encode()
        forged.append(("forged", rng.choice(COMPANIES), body))
    sends = genuine + duplicates + forged
    rng.shuffle(sends)
    return sends


async def send_all(base: str, sends: list[Send]) -> dict[str, Figures]:
    """Every delivery, by SENDERS concurrent senders; answer times of 2xx, by kind."""
    figures = {kind: Figures() for kind in ("genuine", "duplicate", "forged")}
    pending = list(reversed(sends))

    async def sender() -> None:
        conn = Connection(base)
        while pending:
            kind, company, body = pending.pop()
            took = await deliver(conn, company, body, FORGER if kind == "forged" else KEY)
            if took is None:
                figures[kind].errors += 1
            else:
                figures[kind].latencies.append(took)
        await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    for f in figures.values():
        f.seconds = time.perf_counter() - started
    return figures


async def one_sender(base: str, sends: list[Send]) -> Figures:
    figures, conn = Figures(), Connection(base)
    for kind, company, body in sends:
        took = await deliver(conn, company, body, KEY) if kind == "genuine" else None
        if took is not None:
            figures.latencies.append(took)
    await conn.close()
    return figures


async def deliver(conn: Connection, company: str, body: bytes, key: str) -> float | None:
    """One delivery signed with `key`: the seconds its answer took if 2xx, else None."""
    headers = {"Content-Type": "application/json", "Signature": sign(key, body)}
    began = time.perf_counter()
    status, _ = await conn.request("POST", f"{P}/inbound/{company}", body, headers)
    return time.perf_counter() - began if 200 <= status < 300 else None


def bench_inbound(quick: bool) -> None:
    total = 500 if quick else 1_000
    print(
        f"\n9. {total:,} CallRail deliveries from {SENDERS} concurrent senders (80% new, 10% "
        "sent again, 10% forged): alone, then while a 20,000-company sync runs"
    )
    rng = random.Random(9)
    redis.Redis.from_url(BENCH_REDIS).flushdb()  # no key-reading claims left by an earlier run
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp), workers=1, concurrency=2) as s:
        stores = s.stores()
        owner = Settings(jwt_secret=DEV_SECRET).demo_account_id
        account = stores.userconfig.of_owner(owner)[0]
        for company in COMPANIES:
            registration = Registration(
                callrail_account_id=account, company_id=company, integration_id="1", signing_key=KEY
            )
            stores.receivers.register(owner, registration)
        assert s.simulator_url is not None
        assert s.demo_key is not None
        big = SimControl(s.simulator_url).add_account(s.demo_key, 20_000)
        one = asyncio.run(one_sender(s.shim_url, sends_for("S", 125, rng)))
        print(
            f"   one sender, one delivery at a time: 2xx answer p50 {one.p50:5.1f} ms, "
            f"p99 {one.pct(99):5.1f} ms (no queueing: what a single delivery costs)"
        )
        rounds: dict[str, Round] = {}
        for name in ("alone", "during a sync"):
            sends = sends_for("A" if name == "alone" else "B", total, rng)
            sync_state = "none"
            if name != "alone":
                answer = requests.post(
                    f"{s.shim_url}{P}/sync",
                    json={"kind": "companies", "account_id": big},
                    headers=headers(),
                    timeout=10,
                ).json()["data"]
                job_id = answer["job_id"]
                while (job := stores.jobs.get(job_id)) is not None and job.status == "queued":
                    time.sleep(0.02)
            figures = asyncio.run(send_all(s.shim_url, sends))
            if name != "alone":
                job = stores.jobs.get(job_id)
                sync_state = job.status.value if job else "?"
            rounds[name] = (sends, figures, sync_state)
        report(stores, rounds)


def report(stores: Stores, rounds: dict[str, Round]) -> None:
    """What each round came to, once every kept delivery had time to become an event."""
    events, inbox = stores.db["callrail_call_events"], stores.db["callrail_inbox"]
    deadline = time.monotonic() + 180
    while inbox.count_documents({"state": "pending"}) and time.monotonic() < deadline:
        time.sleep(0.2)
    stored = Counter(d["resource_id"] for d in events.find({}, {"resource_id": 1}))
    kept_keys = {d["_id"] for d in inbox.find({}, {"_id": 1})}
    base = None
    for name, (sends, figures, sync_state) in rounds.items():
        genuine, dup, forged = figures["genuine"], figures["duplicate"], figures["forged"]
        keys = {json.loads(b)["resource_id"]: key_of(c, b) for k, c, b in sends if k == "genuine"}
        forged_ids = {json.loads(b)["resource_id"] for k, _, b in sends if k == "forged"}
        answered = genuine.latencies + dup.latencies
        timing = Figures(latencies=answered)
        base = base or timing
        as_events = sum(1 for i in keys if stored.get(i))
        lost = sum(1 for i, key in keys.items() if not stored.get(i) and key not in kept_keys)
        ending = "" if name == "alone" else f" (the sync was {sync_state} when it ended)"
        print(f"   {name}{ending}")
        print(
            f"      accepted {len(answered)} of {len(keys) + len(dup.latencies) + dup.errors} "
            f"genuine (incl. {len(dup.latencies)} sent again), stored {as_events} calls as "
            f"events, duplicates stored {sum(stored[i] - 1 for i in keys if stored.get(i))} "
            f"(goal 0), forged accepted {len(forged.latencies)} of "
            f"{len(forged.latencies) + forged.errors} (goal 0), forged stored "
            f"{sum(1 for i in forged_ids if stored.get(i))}, lost {lost} (goal 0; kept but "
            f"not yet an event {len(keys) - as_events - lost})"
        )
        print(
            f"      2xx answer p50 {timing.p50:5.1f} ms, p99 {timing.pct(99):5.1f} ms "
            f"({timing.pct(99) / base.pct(99):4.2f}x the round alone; goal p99 < 50 ms); the "
            f"round took {genuine.seconds:.1f} s"
        )


def key_of(company: str, body: bytes) -> str:
    """The inbox key the receiver gives this delivery (sent to a URL that names no event)."""
    payload = json.loads(body)
    event = deliveries.event_of(payload)
    return deliveries.dedupe_key(company, event, payload["resource_id"], [], body)
