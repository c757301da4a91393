"""Sync notifications: a real HTTP receiver on this machine gets signed POSTs when jobs end,
through real Celery workers; failures are retried and every attempt is recorded."""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from api_shim.answers import PREFIX as P
from callrail_sync.signatures import HEADER, sign, verify
from tests.conftest import wait_job


class Receiver:
    """A callback endpoint: answers with scripted statuses (then 200), records every POST."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.delay = 0.0
        self.received: queue.Queue[tuple[dict, bytes]] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = outer.script.pop(0) if outer.script else 200
                outer.received.put((dict(self.headers), body))
                time.sleep(outer.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sync"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float = 20.0) -> tuple[dict, bytes]:
        return self.received.get(timeout=timeout)


@pytest.fixture
def settings(settings):
    """Callbacks on this machine are allowed (a development setting), retries come fast."""
    return settings.model_copy(
        update={"allow_private_urls": True, "notify_backoff_base": 0.2, "notify_retry_for": 30.0}
    )


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def call(shim_url, token, method, path, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, shim_url + path, headers=headers, timeout=30, **kw)


def test_a_sync_is_announced_signed_after_retries_with_every_attempt_recorded(
    shim_url, token, worker, owner, stores, submit_job, receiver, sim_data, api_key
):
    created = call(shim_url, token, "PUT", f"{P}/notifications", json={"url": receiver.url})
    assert created.status_code == 200, created.text
    secret = created.json()["data"]["secret"]
    assert secret.startswith("whsec_")
    assert created.json()["data"]["events"] == ["sync.succeeded", "sync.failed", "webhook.changed"]
    # Shown once: neither a later PUT nor a GET shows it again.
    again = call(shim_url, token, "PUT", f"{P}/notifications", json={"url": receiver.url})
    assert "secret" not in again.json()["data"]
    assert secret not in call(shim_url, token, "GET", f"{P}/notifications").text

    receiver.script = [500, 503]
    account = sim_data.accounts_by_key[api_key][0]
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    done = wait_job(stores, job.id)
    bodies = [receiver.next() for _ in range(3)]
    for headers, body in bodies:
        assert verify(secret, headers[HEADER], body)
        assert not verify("whsec_wrong", headers[HEADER], body)
    headers, body = bodies[-1]
    payload = json.loads(body)
    assert payload["event"] == "sync.succeeded" and payload["job_id"] == job.id
    assert payload["kind"] == "companies" and payload["callrail_account_id"] == account
    total = done.result["counts"]["records"]
    assert payload["counts"] == {"added": total, "updated": 0, "deleted": 0, "total": total}
    assert payload["status"] == "succeeded" and payload["error"] is None
    assert payload["started_at"] and payload["finished_at"]
    assert headers["X-Callrail-Sync-Notification"] == payload["delivery_id"]

    # The receiver has its answer before the worker writes it down: wait for the record.
    deadline = time.monotonic() + 10
    while stores.notifications.recent(owner)[0].status != "delivered":
        assert time.monotonic() < deadline, stores.notifications.recent(owner)
        time.sleep(0.05)
    listed = call(shim_url, token, "GET", f"{P}/notifications/deliveries").json()["data"]
    delivery = listed["deliveries"][0]
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["payload"] == payload
    assert receiver.received.empty()  # delivered once it was taken


def test_a_failed_sync_is_announced_with_its_error_and_signed_with_both_secrets_after_rotation(
    shim_url, token, worker, owner, stores, submit_job, receiver
):
    body = {"url": receiver.url, "events": ["sync.failed"]}
    first = call(shim_url, token, "PUT", f"{P}/notifications", json=body).json()["data"]["secret"]
    rotated = call(shim_url, token, "POST", f"{P}/notifications/rotate").json()["data"]["secret"]
    assert rotated != first
    job, _ = submit_job(owner, "sync_companies", callrail_account_id="ACCnothere")
    assert wait_job(stores, job.id).status.value == "failed"
    headers, raw = receiver.next()
    # Within NOTIFY_SECRET_GRACE of the rotation both secrets sign (two v1=): a receiver that
    # has not switched yet still verifies; one that has, too.
    assert headers[HEADER].count("v1=") == 2
    assert verify(rotated, headers[HEADER], raw) and verify(first, headers[HEADER], raw)
    assert not verify("whsec_other", headers[HEADER], raw)
    payload = json.loads(raw)
    assert payload["event"] == "sync.failed"
    assert payload["counts"] == {"added": 0, "updated": 0, "deleted": 0, "total": 0}
    assert payload["error"]["class"] == "not_found" and payload["error"]["retryable"] is False


def test_a_callback_that_never_answers_2xx_is_given_up_after_the_retry_time(
    shim_url, token, worker, owner, stores, submit_job, receiver, settings, runtime
):
    runtime.settings = settings.model_copy(update={"notify_retry_for": 1.0})
    call(shim_url, token, "PUT", f"{P}/notifications", json={"url": receiver.url})
    receiver.script = [500] * 100
    job, _ = submit_job(owner, "sync_accounts")
    wait_job(stores, job.id)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = stores.notifications.recent(owner)
        if found and found[0].status == "failed":
            break
        time.sleep(0.1)
    delivery = stores.notifications.recent(owner)[0]
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert len(delivery.attempts) >= 2 and all(a.status_code == 500 for a in delivery.attempts)


def test_callback_input_follows_the_url_policy(shim_url, token, owner, runtime, settings):
    runtime.settings = settings.model_copy(update={"allow_private_urls": False})
    cases = [
        ({}, "url is required."),
        ({"url": "http://127.0.0.1:9/x"}, "url must use https."),
        ({"url": "https://169.254.169.254/latest"}, "url must not point at"),
        ({"url": "https://u:p@example.com/"}, "url must not carry credentials"),
        ({"url": "https://example.com/", "events": ["sync.exploded"]}, "events must be"),
        ({"url": "https://example.com/", "events": []}, "events must be"),
    ]
    for body, message in cases:
        answer = call(shim_url, token, "PUT", f"{P}/notifications", json=body)
        assert answer.status_code == 400 and answer.json()["message"].startswith(message), body
    for method, path in (("GET", ""), ("POST", "/rotate"), ("DELETE", "")):
        answer = call(shim_url, token, method, f"{P}/notifications{path}")
        assert answer.status_code == 404
        assert answer.json()["message"] == "No notification callback is set."


def test_signatures_refuse_tampering_and_old_times():
    secret, body = "whsec_test", b'{"event":"sync.succeeded"}'
    header = sign(secret, body)
    assert verify(secret, header, body)
    assert not verify(secret, header, body + b" ")
    assert not verify(secret, header.replace("v1=", "v1=0"), body)
    assert not verify(secret, sign(secret, body, timestamp=int(time.time()) - 3600), body)
    assert not verify(secret, "v1=abc", body)
    assert not verify(secret, "t=notanumber,v1=abc", body)


def test_the_sweeper_resends_a_delivery_whose_message_was_lost(stores, runtime, owner):
    from datetime import timedelta

    from callrail_sync.stores.database import utcnow
    from callrail_sync.stores.notifications import DELIVERIES
    from tasks.notify import resend_overdue

    url = "https://example.com/h"
    stores.notifications.configure(owner, url, ["sync.succeeded"])
    later = utcnow() + timedelta(hours=1)
    delivery = stores.notifications.new_notification(
        owner, "sync.succeeded", "job_x", url, "{}", later
    )
    sent: list[str] = []
    assert resend_overdue(runtime, lambda i, c: sent.append(i)) == 0  # just made: not lost
    five_minutes_ago = utcnow() - timedelta(minutes=5)
    stores.db[DELIVERIES].update_one(
        {"_id": delivery.id}, {"$set": {"next_attempt_at": five_minutes_ago}}
    )
    assert resend_overdue(runtime, lambda i, c: sent.append(i)) == 1
    assert sent == [delivery.id]


def test_two_messages_of_one_delivery_post_it_once(stores, runtime, owner, receiver):
    from datetime import timedelta

    from callrail_sync.stores.database import utcnow
    from tasks.notify import deliver

    stores.notifications.configure(owner, receiver.url, ["sync.succeeded"])
    later = utcnow() + timedelta(hours=1)
    delivery = stores.notifications.new_notification(
        owner, "sync.succeeded", "job_y", receiver.url, '{"event":"sync.succeeded"}', later
    )
    receiver.delay = 0.5  # the first POST is still under way when the second message runs
    answers: list[dict] = []
    threads = [
        threading.Thread(target=lambda: answers.append(deliver(None, delivery.id)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(a["status"] for a in answers) == ["delivered", "pending"]
    receiver.next()
    assert receiver.received.empty()
    assert [a.status_code for a in stores.notifications.notification(delivery.id).attempts] == [200]
