"""Pages of a published snapshot are served from memory; a new snapshot is seen at once."""

from __future__ import annotations

from collections import Counter

import pytest
import requests

from callrail_sync.cli.processes import wait_until
from callrail_sync.stores.snapshots import ITEM_COLLECTIONS, SORT_KEYS, SORTABLE

from .conftest import wait_job

P = "/v1/e/callrail"


class CountingSnapshots:
    """The real snapshot store, counting the reads the shim asks of it."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, Counter()

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


@pytest.fixture
def counting(runtime) -> CountingSnapshots:
    runtime.stores.snapshots = CountingSnapshots(runtime.stores.snapshots)
    return runtime.stores.snapshots


def test_a_page_read_again_asks_the_store_nothing(
    counting, shim_url, shim_server, token, owner, worker, stores
):
    headers = {"Authorization": f"Bearer {token}"}
    page = f"{shim_url}{P}/accounts?per_page=1&sort=-name"
    heard: list[dict] = []
    shim_server[1].app.state.services.hub.listen(heard.append)  # after the cache's own listener
    job_id = requests.get(page, headers=headers, timeout=10).json()["data"]["job_id"]
    wait_job(stores, job_id)
    # The job's last event drops the cached head when it reaches the shim, a moment after the
    # job is written: wait for it, or it comes between two reads below (it did, under load).
    done = {"job_id": job_id, "status": "succeeded"}
    assert wait_until(lambda: any(done.items() <= e.items() for e in heard), 10), heard
    first = requests.get(page, headers=headers, timeout=10).json()["data"]
    reads = sum(counting.calls.values())
    again = [requests.get(page, headers=headers, timeout=10).json()["data"] for _ in range(5)]
    assert all(a == first for a in again)
    assert sum(counting.calls.values()) == reads  # no find, no count, no head lookup
    # Another page of the same filter is read, but its total is not counted again.
    second = requests.get(page + "&page=2", headers=headers, timeout=10).json()["data"]
    assert second["total_records"] == first["total_records"] == 2
    assert counting.calls["count"] == 1 and counting.calls["read_page"] == 2


def test_a_new_snapshot_is_served_as_soon_as_its_sync_ends(
    counting, shim_url, token, owner, worker, stores
):
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{shim_url}{P}/accounts"
    wait_job(stores, requests.get(url, headers=headers, timeout=10).json()["data"]["job_id"])
    before = requests.get(url, headers=headers, timeout=10).json()["data"]["snapshot"]
    refresh = requests.get(url + "?refresh=true", headers=headers, timeout=10).json()["data"]
    wait_job(stores, refresh["job_id"])
    after = requests.get(url, headers=headers, timeout=10).json()["data"]["snapshot"]
    assert after["synced_at"] > before["synced_at"]  # no waiting for a cache to expire


def test_every_sort_has_an_index_with_its_tie_break(stores):
    for kind, collection in ITEM_COLLECTIONS.items():
        indexes = [
            [field for field, _ in index["key"]]
            for index in stores.db[collection].index_information().values()
        ]
        for sort in SORTABLE[kind]:
            key = SORT_KEYS.get(sort, sort)
            expected = ["snapshot_id", "id"] if sort == "id" else ["snapshot_id", key, "id"]
            assert expected in indexes, (kind, sort)
