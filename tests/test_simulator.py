"""The simulator pins the facts of CALLRAIL_API.md that it implements, over real HTTP."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from simulator import SimData, SimServer


def get(sim: SimServer, path: str, key: str | None, header: str | None = None, **params):
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif key is not None:
        headers["Authorization"] = f'Token token="{key}"'
    return requests.get(sim.base_url + path, headers=headers, params=params, timeout=5)


def send(sim: SimServer, method: str, path: str, key: str, body=None, **params):
    return requests.request(
        method,
        sim.base_url + path,
        json=body,
        params=params,
        timeout=5,
        headers={"Authorization": f'Token token="{key}"'},
    )


@pytest.mark.parametrize("header", ['Token token="{k}"', "Token token={k}"])
def test_both_token_header_forms_are_accepted(sim, api_key, header):
    response = get(sim, "/a.json", None, header=header.format(k=api_key))
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer {k}", 'Token token="wrong"', "Token {k}"])
def test_anything_else_is_401(sim, api_key, header):
    response = get(sim, "/a.json", None, header=header.format(k=api_key) if header else "")
    assert response.status_code == 401


def test_accounts_list_is_a_json_at_v3_a_json_and_each_key_sees_its_own(sim, sim_data):
    key_a, key_b = sim_data.api_keys
    body_a = get(sim, "/a.json", key_a).json()
    body_b = get(sim, "/a.json", key_b).json()
    ids_a = {a["id"] for a in body_a["accounts"]}
    ids_b = {a["id"] for a in body_b["accounts"]}
    assert len(ids_a) == 2 and len(ids_b) == 2 and not ids_a & ids_b
    assert all(i.startswith("ACC") and len(i) == 35 for i in ids_a)
    assert body_a["total_records"] == 2 and body_a["total_pages"] == 1
    # The seed's path does not exist upstream.
    assert get(sim, "/a/accounts.json", key_a).status_code == 404
    # Another key's account is invisible.
    assert get(sim, f"/a/{next(iter(ids_b))}/companies.json", key_a).status_code == 404


def test_numeric_id_comes_only_via_fields_and_works_in_paths(sim, api_key):
    plain = get(sim, "/a.json", api_key).json()["accounts"][0]
    assert "numeric_id" not in plain
    rich = get(sim, "/a.json", api_key, fields="numeric_id").json()["accounts"][0]
    assert get(sim, f"/a/{rich['numeric_id']}.json", api_key).json()["id"] == plain["id"]


def test_companies_pagination_defaults_and_maximum(sim, sim_data, api_key):
    acc = sim_data.add_account(api_key, 620)
    default = get(sim, f"/a/{acc}/companies.json", api_key).json()
    assert default["per_page"] == 100 and len(default["companies"]) == 100
    assert default["total_records"] == 620 and default["total_pages"] == 7
    big = get(sim, f"/a/{acc}/companies.json", api_key, per_page=1000).json()
    assert big["per_page"] == 250 and len(big["companies"]) == 250  # documented guess: clamps
    last = get(sim, f"/a/{acc}/companies.json", api_key, per_page=250, page=3).json()
    assert len(last["companies"]) == 120 and last["page"] == 3
    beyond = get(sim, f"/a/{acc}/companies.json", api_key, per_page=250, page=9).json()
    assert beyond["companies"] == [] and beyond["total_pages"] == math.ceil(620 / 250)


def test_companies_status_filter_search_and_sort(sim, sim_data, api_key):
    acc = sim_data.add_account(api_key, 200)
    everything = get(sim, f"/a/{acc}/companies.json", api_key, per_page=250).json()["companies"]
    disabled = get(sim, f"/a/{acc}/companies.json", api_key, per_page=250, status="disabled").json()
    assert disabled["total_records"] == sum(c["status"] == "disabled" for c in everything) > 0
    assert all(c["disabled_at"] for c in disabled["companies"])
    word = everything[0]["name"].split()[0]
    found = get(sim, f"/a/{acc}/companies.json", api_key, per_page=250, search=word.upper()).json()
    assert found["total_records"] == sum(word.lower() in c["name"].lower() for c in everything)
    desc = get(
        sim, f"/a/{acc}/companies.json", api_key, per_page=250, sort="name", order="desc"
    ).json()
    names = [c["name"].lower() for c in desc["companies"]]
    assert names == sorted(names, reverse=True)
    assert get(sim, f"/a/{acc}/companies.json", api_key, order="asc").status_code == 400
    assert get(sim, f"/a/{acc}/companies.json", api_key, status="gone").status_code == 400


def test_created_at_sorts_by_the_instant_not_by_the_text_with_its_offset(sim, sim_data, api_key):
    acc = sim_data.add_account(api_key, 120)
    companies = sim_data.companies(sim_data.accounts[acc])
    # 17:07:59 UTC and 16:33:03 UTC: as text, the later instant would come first.
    companies[0]["created_at"] = later = "2019-10-20T10:07:59-07:00"
    companies[1]["created_at"] = earlier = "2019-10-20T11:33:03-05:00"
    path = f"/a/{acc}/companies.json"
    for order in ("asc", "desc"):
        listed = get(sim, path, api_key, per_page=250, sort="created_at", order=order).json()
        stamps = [c["created_at"] for c in listed["companies"]]
        assert len({s[-6:] for s in stamps}) > 1  # the listing mixes offsets
        instants = [datetime.fromisoformat(s) for s in stamps]
        assert instants == sorted(instants, reverse=order == "desc")
        assert (stamps.index(earlier) < stamps.index(later)) == (order == "asc")


def test_disabled_at_sorts_chronologically_with_nulls_last_in_both_orders(sim, sim_data, api_key):
    acc = sim_data.add_account(api_key, 200)
    path = f"/a/{acc}/companies.json"
    for order in ("asc", "desc"):
        listed = get(sim, path, api_key, per_page=250, sort="disabled_at", order=order).json()
        stamps = [c["disabled_at"] for c in listed["companies"]]
        nulls = stamps.index(None)
        assert nulls > 1 and set(stamps[nulls:]) == {None}
        instants = [datetime.fromisoformat(s) for s in stamps[:nulls]]
        assert instants == sorted(instants, reverse=order == "desc")


def test_no_company_is_disabled_before_it_was_created():
    data = SimData(seed=3, keys=1, accounts_per_key=4, companies_per_account=500)
    companies = [c for a in data.accounts.values() for c in data.companies(a)]
    disabled = [c for c in companies if c["disabled_at"] is not None]
    assert len(disabled) > 100
    for company in disabled:
        created = datetime.fromisoformat(company["created_at"])
        assert created < datetime.fromisoformat(company["disabled_at"]) < datetime.now(UTC)


def test_company_objects_carry_the_documented_fields_with_offset_timestamps(sim, sim_data, api_key):
    acc = sim_data.accounts_by_key[api_key][0]
    company = get(sim, f"/a/{acc}/companies.json", api_key).json()["companies"][0]
    for name in (
        "id",
        "name",
        "status",
        "time_zone",
        "created_at",
        "disabled_at",
        "dni_active",
        "script_url",
        "callscore_enabled",
        "lead_scoring_enabled",
        "swap_cookie_duration_unit",
    ):
        assert name in company
    assert company["id"].startswith("COM")
    assert company["created_at"][-6] in "+-"  # e.g. 2018-02-19T13:41:00.236-05:00
    one = get(sim, f"/a/{acc}/companies/{company['id']}.json", api_key)
    assert one.status_code == 200 and one.json() == company
    assert get(sim, f"/a/{acc}/companies/COMnope.json", api_key).status_code == 404


def test_webhooks_are_one_integration_per_company(sim, sim_data, api_key):
    acc = sim_data.accounts_by_key[api_key][0]
    company = get(sim, f"/a/{acc}/companies.json", api_key).json()["companies"][0]["id"]
    assert (
        get(sim, f"/a/{acc}/integrations.json", api_key).status_code == 400
    )  # company_id required
    body = {
        "type": "Webhooks",
        "company_id": company,
        "config": {"post_call_webhook": ["https://h.example/a"]},
    }
    created = send(sim, "POST", f"/a/{acc}/integrations.json", api_key, body)
    assert created.status_code == 201
    integration = created.json()
    assert integration["type"] == "Webhooks" and integration["state"] == "active"
    assert integration["config"] == {"post_call_webhook": ["https://h.example/a"]}
    assert "signing_key" not in integration
    again = send(sim, "POST", f"/a/{acc}/integrations.json", api_key, body)
    assert again.status_code == 422 and "already" in again.json()["error"]
    listed = get(sim, f"/a/{acc}/integrations.json", api_key, company_id=company).json()
    assert [i["id"] for i in listed["integrations"]] == [integration["id"]]
    with_key = get(
        sim, f"/a/{acc}/integrations/{integration['id']}.json", api_key, fields="signing_key"
    )
    assert len(with_key.json()["signing_key"]) == 32
    path = f"/a/{acc}/integrations/{integration['id']}.json"
    updated = send(sim, "PUT", path, api_key, {"state": "disabled"})
    assert updated.status_code == 200 and updated.json()["state"] == "disabled"
    assert updated.json()["config"] == integration["config"]  # partial update
    assert send(sim, "PUT", path, api_key, {"state": "paused"}).status_code == 422
    bad_url = send(sim, "PUT", path, api_key, {"config": {"post_call_webhook": ["ftp://x"]}})
    assert bad_url.status_code == 422 and bad_url.json()["errors"]
    assert send(sim, "DELETE", path, api_key).status_code == 204
    assert get(sim, path, api_key).json()["state"] == "disabled"
    assert get(sim, f"/a/{acc}/integrations/999.json", api_key).status_code == 404
    assert send(sim, "PATCH", path, api_key, {"state": "active"}).status_code == 405


def test_requests_naming_no_account_spend_their_key_s_quota_with_or_without_retry_after(
    sim, sim_data
):
    key_a, key_b = sim_data.api_keys
    sim.set_knobs(rate_limits=[(3, 60)])
    assert [get(sim, "/a.json", key_a).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert "Retry-After" not in get(sim, "/a.json", key_a).headers
    assert get(sim, "/a.json", key_b).status_code == 200  # keys have separate quotas
    sim.set_knobs(send_retry_after=True)
    limited = get(sim, "/a.json", key_a)
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert {r.quota_unit for r in sim.requests_logged()} == {
        f"key:{key_a[:8]}…",
        f"key:{key_b[:8]}…",
    }


def test_keys_that_share_an_account_share_its_quota_however_they_name_it(sim, sim_data):
    key_a, key_b = sim_data.api_keys
    account = sim_data.accounts[sim_data.accounts_by_key[key_a][0]]
    sim_data.share_account(key_b, account.id)
    sim.set_knobs(rate_limits=[(3, 60)])
    by_id, by_number = f"/a/{account.id}/companies.json", f"/a/{account.numeric_id}.json"
    assert get(sim, by_id, key_a).status_code == 200
    assert get(sim, by_number, key_b).status_code == 200
    assert get(sim, by_id, key_b).status_code == 200
    assert get(sim, by_id, key_a).status_code == 429  # 3 spent between the two keys
    assert get(sim, by_number, key_b).status_code == 429
    assert {r.quota_unit for r in sim.requests_logged()} == {f"account:{account.id}"}
    assert get(sim, "/a.json", key_b).status_code == 200  # the keys' own quotas are untouched


def test_each_account_of_a_key_has_its_own_quota(sim, sim_data, api_key):
    first, second = sim_data.accounts_by_key[api_key]
    sim.set_knobs(rate_limits=[(2, 60)])
    spend = [get(sim, f"/a/{first}/companies.json", api_key).status_code for _ in range(3)]
    assert spend == [200, 200, 429]
    assert get(sim, f"/a/{second}/companies.json", api_key).status_code == 200
    assert get(sim, f"/a/{second}.json", api_key).status_code == 200
    assert get(sim, f"/a/{second}.json", api_key).status_code == 429


def test_the_log_names_a_key_s_quota_by_its_first_8_characters_only(sim, api_key):
    get(sim, "/a.json", api_key)
    (entry,) = sim.requests_logged()
    assert entry.quota_unit == f"key:{api_key[:8]}…" and api_key not in entry.quota_unit
    logged = requests.get(sim.base_url.replace("/v3", "/_sim/log"), timeout=5).json()
    assert logged["requests"][0]["quota_unit"] == entry.quota_unit


def test_sim_keys_control_gives_a_new_key_existing_accounts(sim, sim_data, api_key):
    url = sim.base_url.replace("/v3", "/_sim/keys")
    account = sim_data.accounts_by_key[api_key][0]
    added = requests.post(url, json={"key": "second-app-key", "accounts": [account]}, timeout=5)
    assert added.status_code == 201 and added.json()["accounts"] == [account]
    listed = get(sim, "/a.json", "second-app-key").json()["accounts"]
    assert [a["id"] for a in listed] == [account]
    unknown = {"key": "third-app-key", "accounts": [account, "ACCnope"]}
    assert requests.post(url, json=unknown, timeout=5).status_code == 404
    assert "third-app-key" not in sim_data.api_keys  # nothing half-done
    for bad in ({"accounts": [account]}, {"key": "k", "accounts": account}):
        assert requests.post(url, json=bad, timeout=5).status_code == 400


def test_scripted_failures_and_the_request_log(sim, api_key):
    sim.set_knobs(fail_next=["500", "503"])
    first, second = get(sim, "/a.json", api_key), get(sim, "/a.json", api_key)
    assert (first.status_code, second.status_code) == (500, 503)
    assert first.headers["Content-Type"].startswith("text/html")
    assert get(sim, "/a.json", api_key).status_code == 200
    stats = requests.get(sim.base_url.replace("/v3", "/_sim/stats"), timeout=5).json()
    assert stats["requests"] == 3 and stats["by_status"] == {"200": 1, "500": 1, "503": 1}
    requests.post(sim.base_url.replace("/v3", "/_sim/reset"), timeout=5)
    assert sim.stats()["requests"] == 0
    knobs = requests.post(
        sim.base_url.replace("/v3", "/_sim/knobs"), json={"latency": 0.01}, timeout=5
    )
    assert knobs.json()["knobs"]["latency"] == 0.01
    assert (
        requests.post(
            sim.base_url.replace("/v3", "/_sim/knobs"), json={"nope": 1}, timeout=5
        ).status_code
        == 400
    )


def test_small_answers_on_a_keep_alive_connection_do_not_wait_for_delayed_acks(sim, api_key):
    """With Nagle on, an answer written after unacknowledged bytes waits ~40 ms for an ACK: then
    every request takes 40 ms or more. The fastest of 20 is what tells (the mean failed on a
    loaded machine, where any request may wait for a core)."""
    with requests.Session() as session:
        session.headers["Authorization"] = f'Token token="{api_key}"'
        session.get(sim.base_url + "/a.json", timeout=5)  # open the connection
        took = []
        for _ in range(20):
            started = time.perf_counter()
            assert session.get(sim.base_url + "/a.json", timeout=5).status_code == 200
            took.append(time.perf_counter() - started)
    assert min(took) < 0.025, sorted(took)


def test_dropped_connection_sends_no_response(sim, api_key):
    sim.set_knobs(fail_next=["drop"])
    with pytest.raises(requests.ConnectionError):
        get(sim, "/a.json", api_key)


def test_same_seed_same_data():
    one = SimData(seed=5, keys=2, accounts_per_key=2, companies_per_account=5)
    two = SimData(seed=5, keys=2, accounts_per_key=2, companies_per_account=5)
    other = SimData(seed=6, keys=2, accounts_per_key=2, companies_per_account=5)
    assert one.api_keys == two.api_keys != other.api_keys
    acc_one, acc_two = (d.accounts[d.accounts_by_key[d.api_keys[0]][0]] for d in (one, two))
    assert one.companies(acc_one) == two.companies(acc_two)


# --- data that changes while the simulator runs ------------------------------------------------


def control(sim: SimServer, method: str, path: str, body=None):
    return requests.request(
        method, sim.base_url.replace("/v3", "/_sim") + path, json=body, timeout=5
    )


def listed(sim: SimServer, key: str, account: str, **params) -> list[dict]:
    path = f"/a/{account}/companies.json"
    return get(sim, path, key, per_page=250, **params).json()["companies"]


def is_now(timestamp: str) -> bool:
    moment = datetime.fromisoformat(timestamp)
    return moment.utcoffset() is not None and abs(moment - datetime.now(UTC)) < timedelta(minutes=1)


def test_a_company_added_while_running_is_listed_last_and_fetchable(sim, sim_data, api_key):
    acc = sim_data.accounts_by_key[api_key][0]
    before = listed(sim, api_key, acc)
    added = control(sim, "POST", "/companies", {"account": acc})
    assert added.status_code == 201
    company = added.json()
    assert company["id"].startswith("COM") and len(company["id"]) == 35
    assert set(company) == set(before[0])  # every field a seeded company has
    assert company["status"] == "active" and company["disabled_at"] is None
    assert is_now(company["created_at"])
    assert listed(sim, api_key, acc) == [*before, company]
    assert get(sim, f"/a/{acc}/companies/{company['id']}.json", api_key).json() == company
    chosen = control(sim, "POST", "/companies", {"account": acc, "id": "COMchosen", "name": "N"})
    assert chosen.status_code == 201 and listed(sim, api_key, acc)[-1]["id"] == "COMchosen"


def test_add_company_in_python_appends_to_the_list_the_api_serves(sim, sim_data, api_key):
    acc = sim_data.accounts_by_key[api_key][1]
    added = sim_data.add_company(acc, name="Chosen Name Co", status="disabled")
    assert sim_data.companies(sim_data.accounts[acc])[-1] is added
    served = listed(sim, api_key, acc)[-1]
    assert served["name"] == "Chosen Name Co" and is_now(served["disabled_at"])


def test_a_changed_company_reads_changed_in_listings_and_by_id(sim, sim_data, api_key):
    acc = sim_data.accounts_by_key[api_key][0]
    first = listed(sim, api_key, acc)[0]
    changes = {"name": "Renamed LLC", "time_zone": "America/Denver", "a_new_field": 7}
    changed = control(sim, "PATCH", f"/companies/{first['id']}", changes)
    assert changed.status_code == 200 and changed.json() == {**first, **changes}
    assert listed(sim, api_key, acc)[0] == changed.json()
    assert get(sim, f"/a/{acc}/companies/{first['id']}.json", api_key).json() == changed.json()
    sim_data.update_company(first["id"], name="Renamed Again")
    assert [c["id"] for c in listed(sim, api_key, acc, search="again")] == [first["id"]]


def test_disabling_stamps_disabled_at_now_in_the_company_s_offset_and_activating_clears_it(
    sim, sim_data, api_key
):
    acc = sim_data.accounts_by_key[api_key][0]
    company = next(c for c in listed(sim, api_key, acc) if c["status"] == "active")
    path = f"/companies/{company['id']}"
    disabled = control(sim, "PATCH", path, {"status": "disabled"}).json()
    assert is_now(disabled["disabled_at"])
    assert disabled["disabled_at"][-6:] == company["created_at"][-6:]  # same time zone
    assert company["id"] in {c["id"] for c in listed(sim, api_key, acc, status="disabled")}
    again = control(sim, "PATCH", path, {"status": "disabled", "name": "Still Off"}).json()
    assert again["disabled_at"] == disabled["disabled_at"]  # disabled once, not twice
    active = control(sim, "PATCH", path, {"status": "active"}).json()
    assert active["disabled_at"] is None
    assert company["id"] in {c["id"] for c in listed(sim, api_key, acc, status="active")}
    given = {"status": "disabled", "disabled_at": "2024-05-01T09:00:00.000-04:00"}
    assert control(sim, "PATCH", path, given).json()["disabled_at"] == given["disabled_at"]


def test_a_removed_company_leaves_listings_and_answers_404(sim, sim_data, api_key):
    acc = sim_data.accounts_by_key[api_key][0]
    before = listed(sim, api_key, acc)
    gone = before[3]["id"]
    assert control(sim, "DELETE", f"/companies/{gone}").status_code == 204
    after = get(sim, f"/a/{acc}/companies.json", api_key, per_page=250).json()
    assert after["companies"] == [c for c in before if c["id"] != gone]
    assert after["total_records"] == len(before) - 1
    assert get(sim, f"/a/{acc}/companies/{gone}.json", api_key).status_code == 404
    assert control(sim, "PATCH", f"/companies/{gone}", {"name": "x"}).status_code == 404
    assert control(sim, "DELETE", f"/companies/{gone}").status_code == 404


def test_a_removed_company_reappears_with_the_same_id_and_the_changes_given(sim, sim_data, api_key):
    acc = sim_data.accounts_by_key[api_key][0]
    company = listed(sim, api_key, acc)[0]
    control(sim, "DELETE", f"/companies/{company['id']}")
    body = {"account": acc, "id": company["id"], "name": "Back Again"}
    back = control(sim, "POST", "/companies", body)
    assert back.status_code == 200 and back.json() == {**company, "name": "Back Again"}
    assert listed(sim, api_key, acc)[-1] == back.json()
    assert get(sim, f"/a/{acc}/companies/{company['id']}.json", api_key).status_code == 200
    sim_data.remove_company(company["id"])
    assert company["id"] not in {c["id"] for c in listed(sim, api_key, acc)}
    sim_data.restore_company(company["id"], status="disabled")
    assert is_now(listed(sim, api_key, acc)[-1]["disabled_at"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/companies", {"account": "ACCnope"}, 404),
        ("POST", "/companies", {"name": "no account"}, 400),
        ("POST", "/companies", {"account": "{acc}", "status": "paused"}, 400),
        ("POST", "/companies", {"account": "{acc}", "created_at": "yesterday"}, 400),
        ("POST", "/companies", {"account": "{acc}", "id": "{company}"}, 409),
        ("POST", "/companies", {"account": "{other}", "id": "{removed}"}, 400),
        ("PATCH", "/companies/COMnope", {"name": "x"}, 404),
        ("PATCH", "/companies/{company}", {"name": ""}, 400),
        ("PATCH", "/companies/{company}", {"id": "COMother"}, 400),
        ("PATCH", "/companies/{company}", ["not", "an", "object"], 400),
        ("PATCH", "/companies/{company}", {"disabled_at": "2024-05-01T09:00:00"}, 400),
        ("DELETE", "/companies/COMnope", None, 404),
    ],
)
def test_company_controls_refuse_unknown_ids_and_bad_bodies_and_change_nothing(
    sim, sim_data, api_key, method, path, body, status
):
    acc, other = sim_data.accounts_by_key[api_key]
    companies = sim_data.companies(sim_data.accounts[acc])
    removed = companies[-1]["id"]
    sim_data.remove_company(removed)
    before = [dict(c) for c in companies]
    names = {"acc": acc, "other": other, "company": companies[0]["id"], "removed": removed}
    text = json.dumps(body)
    for name, value in names.items():
        text = text.replace("{" + name + "}", value)
    response = control(sim, method, path.format(**names), json.loads(text))
    assert response.status_code == status and response.json()["error"]
    assert sim_data.companies(sim_data.accounts[acc]) == before


def test_listings_never_show_a_company_half_way_through_a_change(sim, sim_data, api_key):
    """A disabled company always has disabled_at, an active one never, even mid-change."""
    acc = sim_data.add_account(api_key, 250)
    ids = [c["id"] for c in sim_data.companies(sim_data.accounts[acc])]
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            for company_id in ids:
                sim_data.update_company(company_id, status="disabled")
                sim_data.update_company(company_id, status="active")

    writer = threading.Thread(target=flip)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a race shows within a second
    writer.start()
    try:
        for _ in range(40):
            for company in listed(sim, api_key, acc):
                assert (company["status"] == "disabled") == (company["disabled_at"] is not None)
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)
