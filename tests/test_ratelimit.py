"""The shared request budget and how jobs live through CallRail's rate limit."""

from __future__ import annotations

import math
import multiprocessing
import time

import fakeredis
import pytest
import redis

from callrail_sync import errors
from callrail_sync.budget import RequestBudget, Window, fingerprint, unit_for
from callrail_sync.callrail.client import CallRailClient
from callrail_sync.errors import BudgetWait
from tasks.jobs import MAX_COUNTDOWN, RetryPolicy

from .conftest import TEST_REDIS_URL, wait_job


@pytest.fixture(params=["fakeredis", "redis"])
def redis_client(request, redis_url):
    if request.param == "fakeredis":
        return fakeredis.FakeRedis()
    return redis.Redis.from_url(redis_url)


def test_grants_up_to_the_limit_then_says_how_long_to_wait(redis_client):
    budget = RequestBudget(redis_client, [Window(3, 10)], margin=0.5)
    results = [budget.try_acquire("key-a") for _ in range(4)]
    assert [granted for granted, _, _ in results] == [True, True, True, False]
    granted, wait, cooling = results[-1]
    assert 10.0 <= wait <= 10.6 and not cooling


def test_every_window_must_have_room(redis_client):
    budget = RequestBudget(redis_client, [Window(5, 1), Window(2, 60)], margin=0)
    assert [budget.try_acquire("k")[0] for _ in range(3)] == [True, True, False]
    assert budget.try_acquire("k")[1] > 50  # the day-like window decides


def test_keys_have_separate_budgets(redis_client):
    budget = RequestBudget(redis_client, [Window(1, 10)])
    assert budget.try_acquire("key-a")[0] and budget.try_acquire("key-b")[0]
    assert not budget.try_acquire("key-a")[0]


def test_slots_come_back_after_the_window(redis_client):
    budget = RequestBudget(redis_client, [Window(2, 0.3)], margin=0.05)
    assert budget.try_acquire("k")[0] and budget.try_acquire("k")[0]
    assert not budget.try_acquire("k")[0]
    time.sleep(0.4)
    assert budget.try_acquire("k")[0]


def test_redis_never_holds_the_raw_key(redis_client):
    secret = "sk_live_0123456789abcdef"
    budget = RequestBudget(redis_client, [Window(5, 10)])
    budget.try_acquire(secret)
    budget.cool_down(secret, 3)
    names = [k.decode() for k in redis_client.keys("*")]
    assert names and all(secret not in n for n in names)
    assert all(fingerprint(secret) in n for n in names)
    for name in names:
        kind = redis_client.type(name).decode()
        values = redis_client.zrange(name, 0, -1) if kind == "zset" else [redis_client.get(name)]
        assert all(secret.encode() not in (v or b"") for v in values)


def test_cooldown_stops_every_grant_and_never_shortens(redis_client):
    budget = RequestBudget(redis_client, [Window(100, 10)])
    assert 4.9 <= budget.cool_down("k", 5) <= 5.0
    granted, wait, cooling = budget.try_acquire("k")
    assert not granted and cooling and 4 < wait <= 5
    assert budget.cool_down("k", 1) > 4  # a shorter Retry-After does not cut a longer cooldown
    assert budget.try_acquire("other")[0]


def test_cooldown_without_retry_after_backs_off_exponentially(redis_client):
    budget = RequestBudget(redis_client, [Window(100, 10)], cooldown_base=1, cooldown_cap=4)
    first = budget.cool_down("k", None)
    redis_client.delete(budget._keys(fingerprint("k"))[0])
    second = budget.cool_down("k", None)
    redis_client.delete(budget._keys(fingerprint("k"))[0])
    for _ in range(5):
        capped = budget.cool_down("k", None)
        redis_client.delete(budget._keys(fingerprint("k"))[0])
    assert 0.5 <= first <= 1 and 1 <= second <= 2 and 2 <= capped <= 4


def test_acquire_sleeps_short_waits_and_hands_long_ones_back(redis_client):
    budget = RequestBudget(redis_client, [Window(1, 0.2)], margin=0, max_inline_wait=1)
    budget.acquire("k")
    started = time.monotonic()
    waited = budget.acquire("k")
    assert waited >= 0.15 and time.monotonic() - started < 1
    slow = RequestBudget(redis_client, [Window(1, 30)], max_inline_wait=1)
    slow.acquire("j")
    with pytest.raises(BudgetWait) as caught:
        slow.acquire("j")
    assert caught.value.retriable and 29 <= caught.value.retry_after <= 32


def test_no_countdown_outlives_the_visibility_timeout():
    policy = RetryPolicy(max_attempts=5, base=2, cap=10**6)
    assert policy.delay(1, retry_after=86_400) <= MAX_COUNTDOWN
    assert policy.delay(40) <= MAX_COUNTDOWN


@pytest.mark.parametrize(
    ("path", "unit"),
    [
        ("/a/ACC1/companies.json", "account:ACC1"),
        ("/a/ACC1/companies/COM1.json", "account:ACC1"),
        ("/a/ACC1/integrations/7.json", "account:ACC1"),
        ("/a/ACC1.json", "account:ACC1"),
        ("/a/470306151/companies.json", "account:470306151"),
        ("/a.json", f"key:{fingerprint('sk_x')}"),
    ],
)
def test_a_request_is_charged_to_the_account_it_names_else_to_the_key(path, unit):
    assert unit_for("sk_x", path) == unit


def test_two_keys_on_one_account_share_its_budget_and_one_key_has_one_per_account(redis_client):
    budget = RequestBudget(redis_client, [Window(3, 60)])
    first, second = budget.hook("key-one"), budget.hook("key-two")
    for hook in (first, second, first):
        hook("GET", "/a/ACC1/companies.json")
    with pytest.raises(BudgetWait):  # the account's 3 are spent, whichever key spent them
        RequestBudget(redis_client, [Window(3, 60)], max_inline_wait=0).hook("key-two")(
            "GET", "/a/ACC1/companies.json"
        )
    for account in ("ACC2", "ACC3"):  # another account of the same key: a budget of its own
        first("GET", f"/a/{account}/companies.json")
    first("GET", "/a.json")  # naming no account: charged to the key


def _hammer(base_url: str, api_key: str, account: str, seconds: float, out) -> None:
    # The margin covers the time between a grant and CallRail seeing the request (production:
    # BUDGET_MARGIN, 2 s): on a busy machine a process can be descheduled for tenths of a second
    # there. Budgets of each process's own would still send twice the limit and be refused.
    budget = RequestBudget(
        redis.Redis.from_url(TEST_REDIS_URL), [Window(10, 1)], margin=0.5, max_inline_wait=5
    )
    client = CallRailClient(api_key, base_url=base_url, before_request=budget.hook(api_key))
    sent = limited = 0
    began = time.time()  # the wall clock: the two processes' times are compared
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.get_account(account)
            sent += 1
        except errors.RateLimited:
            limited += 1
    out.put((sent, limited, began, time.time()))


@pytest.mark.slow  # a real process of the service
@pytest.mark.parametrize("keys", ["one key", "two keys on the account"])
def test_the_budget_holds_across_two_worker_processes(sim, sim_data, api_key, redis_url, keys):
    """Two OS processes spend one account's quota (with one key, or each with its own key
    on that account); CallRail (10 a second per account) never answers 429."""
    sim.set_knobs(rate_limits=[(10, 1.0)])
    account = sim_data.accounts_by_key[api_key][0]
    other = sim_data.api_keys[1]
    sim_data.share_account(other, account)
    key_of = [api_key, api_key if keys == "one key" else other]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(sim.base_url, key_of[n], account, 4.0, out))
        for n in range(2)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert sum(limited for _, limited, _, _ in results) == 0
    assert sim.stats()["by_status"].get("429") is None
    total = sum(sent for sent, *_ in results)
    assert all(sent > 0 for sent, *_ in results)  # both processes got their share
    # At most 10 in any 1.5 s (the window and its margin) while either process sent (their
    # starts differ by however long each took to spawn), and never more.
    span = max(end for *_, end in results) - min(began for *_, began, _ in results)
    assert 20 <= total <= 10 * (1 + math.ceil(span / 1.5))


# --- jobs under 429s ----------------------------------------------------------------------------


def pages_fetched(sim) -> list[int]:
    return sorted(
        int(r.query.split("page=")[1].split("&")[0])
        for r in sim.requests_logged()
        if r.status == 200 and "page=" in r.query
    )


@pytest.mark.pages_of(25)
def test_a_429_with_retry_after_waits_costs_no_attempt_and_resumes(
    worker, stores, owner, submit_job, sim, sim_data, api_key, runtime
):
    account = sim_data.add_account(api_key, 100)
    runtime.settings.page_concurrency = 1
    sim.set_knobs(fail_next=["ok", "ok", "429"], send_retry_after=True, scripted_retry_after=1)
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    seen_retrying = None
    while not (current := stores.jobs.get(job.id)).is_final:
        if current.status == "retrying":
            seen_retrying = current
        time.sleep(0.02)
    done = wait_job(stores, job.id)
    assert done.status == "succeeded", done.error
    assert seen_retrying is not None and seen_retrying.next_retry_at is not None
    assert done.attempts == 1 and done.rate_limit_waits == 1
    assert pages_fetched(sim) == [1, 2, 3, 4]  # pages 1-2 were not fetched again
    assert done.progress.records == 100


@pytest.mark.pages_of(25)
def test_a_429_storm_without_retry_after_ends_in_a_complete_snapshot(
    worker, stores, owner, submit_job, sim, sim_data, api_key, runtime
):
    """CallRail's quota is spent by someone else (our budget cannot see it): we back off."""
    account = sim_data.add_account(api_key, 200)
    sim.set_knobs(rate_limits=[(3, 1.0)], send_retry_after=False)
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    done = wait_job(stores, job.id, timeout=90)
    assert done.status == "succeeded", done.error
    assert done.rate_limit_waits >= 1 and done.attempts == 1
    assert pages_fetched(sim) == list(range(1, 9))  # every page exactly once
    assert done.progress.records == 200


@pytest.mark.pages_of(25)
def test_random_failures_and_slow_responses_still_sync_everything(
    worker, stores, owner, submit_job, sim, sim_data, api_key, runtime
):
    runtime.settings.max_attempts = 12
    account = sim_data.add_account(api_key, 250)
    sim.set_knobs(failure_rate=0.25, failure_kinds=["500", "503", "drop"], latency=0.02)
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    done = wait_job(stores, job.id, timeout=90)
    assert done.status == "succeeded", done
    head = stores.snapshots.current(owner, "companies", account)
    assert head.counts["records"] == 250
    assert len(set(pages_fetched(sim))) == 10


@pytest.mark.pages_of(25)
def test_a_timed_out_sync_fails_clearly_and_keeps_the_old_snapshot(
    worker, stores, owner, submit_job, sim, sim_data, api_key, runtime
):
    account = sim_data.add_account(api_key, 30)
    first, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    wait_job(stores, first.id)
    runtime.settings.callrail_read_timeout = 0.2
    sim.set_knobs(fail_next=["timeout"] * 10, hang=0.5)
    second, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    done = wait_job(stores, second.id)
    assert done.status == "failed" and done.attempts == 3
    assert (done.error.errno, done.error.message) == (
        504,
        "Could not reach CallRail: timed out (ReadTimeout)",
    )
    assert done.error.error_class == "upstream" and done.error.retryable is True
    assert stores.snapshots.current(owner, "companies", account).snapshot_id == first.id


def test_a_lost_create_response_is_retried_without_a_second_webhook(
    worker, stores, owner, submit_job, sim, sim_data, api_key
):
    account = sim_data.accounts_by_key[api_key][0]
    company = sim_data.companies(sim_data.accounts[account])[0]["id"]
    # list (ok), create (applied, answer lost) → retry: list finds the URL, nothing more is sent.
    sim.set_knobs(fail_next=["ok", "lost"])
    job, _ = submit_job(
        owner,
        "webhook_create",
        callrail_account_id=account,
        company_id=company,
        webhook_url="https://h.example/once",
    )
    done = wait_job(stores, job.id)
    assert done.status == "succeeded" and done.attempts == 2
    integrations = [i for i in sim_data.integrations.values() if i["company_id"] == company]
    assert len(integrations) == 1
    assert integrations[0]["config"]["post_call_webhook"] == ["https://h.example/once"]
    posts = sim.requests_logged(method="POST")
    assert len(posts) == 1
