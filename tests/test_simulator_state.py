"""The simulator keeps its state in a file: a restart changes nothing that a user did not."""

from __future__ import annotations

import json

import requests

from simulator import SimData, SimServer
from simulator.control import SimControl


def data() -> SimData:
    return SimData(seed=11, keys=1, accounts_per_key=2, companies_per_account=20)


def api(sim: SimServer, key: str, method: str, path: str, body=None, **params):
    headers = {"Authorization": f'Token token="{key}"'}
    return requests.request(
        method, sim.base_url + path, json=body, params=params, headers=headers, timeout=5
    )


def test_a_restarted_simulator_keeps_what_changed_while_it_ran(tmp_path):
    state = tmp_path / "run" / "simulator-state.json"
    first = SimServer(data(), state_path=state).start()
    try:
        key = first.data.api_keys[0]
        account = first.data.accounts_by_key[key][0]
        control = SimControl(first.base_url)
        companies = api(first, key, "GET", f"/a/{account}/companies.json").json()["companies"]
        company = companies[0]["id"]
        body = {
            "type": "Webhooks",
            "company_id": company,
            "config": {"post_call_webhook": ["https://h.example/a"]},
        }
        hook = api(first, key, "POST", f"/a/{account}/integrations.json", body).json()
        path = f"/a/{account}/integrations/{hook['id']}.json"
        assert api(first, key, "PUT", path, {"state": "disabled"}).status_code == 200
        added = control.add_company(account, name="Added Later Co")
        renamed = control.change_company(companies[1]["id"], name="Renamed Co")
        control.remove_company(companies[2]["id"])
        extra = control.add_account("second-key", 3)
        call = control.place_call(company, customer_name="Kept Caller")
        control.edit_call(call["id"], note="kept note")
        form = control.add_form(company, customer_name="Kept Form")
        text = control.add_text(company, "+14045550000", content="kept text")
        assert first.settle(5)
        before = {
            "companies": api(first, key, "GET", f"/a/{account}/companies.json").json(),
            "hook": api(first, key, "GET", path, fields="signing_key").json(),
            "calls": api(first, key, "GET", f"/a/{account}/calls.json", fields="note").json(),
            "forms": api(first, key, "GET", f"/a/{account}/form_submissions.json").json(),
            "texts": api(first, key, "GET", f"/a/{account}/text-messages.json").json(),
        }
    finally:
        first.stop()

    second = SimServer(data(), state_path=state).start()
    try:
        assert second.state_note == f"state loaded from {state}"
        after = {
            "companies": api(second, key, "GET", f"/a/{account}/companies.json").json(),
            "hook": api(second, key, "GET", path, fields="signing_key").json(),
            "calls": api(second, key, "GET", f"/a/{account}/calls.json", fields="note").json(),
            "forms": api(second, key, "GET", f"/a/{account}/form_submissions.json").json(),
            "texts": api(second, key, "GET", f"/a/{account}/text-messages.json").json(),
        }
        assert after == before
        assert after["calls"]["calls"][0]["note"] == "kept note"
        assert form["id"] in {f["id"] for f in after["forms"]["form_submissions"]}
        assert after["texts"]["conversations"][0]["id"] == text["id"]
        listed = after["companies"]["companies"]
        assert added in listed and renamed in listed
        assert companies[2]["id"] not in {c["id"] for c in listed}
        assert after["hook"]["state"] == "disabled" and after["hook"]["created_at"]
        assert [c["id"] for c in after["calls"]["calls"]] == [call["id"]]  # no made-up calls
        assert [
            a["id"] for a in api(second, "second-key", "GET", "/a.json").json()["accounts"]
        ] == [extra]
        # The next integration gets a new id, not one already given.
        other = {**body, "company_id": companies[3]["id"]}
        made = api(second, key, "POST", f"/a/{account}/integrations.json", other).json()
        assert made["id"] == hook["id"] + 1
    finally:
        second.stop()


def test_a_state_file_from_other_settings_is_left_unread_and_said_so(tmp_path):
    state = tmp_path / "simulator-state.json"
    first = SimServer(data(), state_path=state).start()
    SimControl(first.base_url).add_account("k", 1)
    first.stop()
    assert json.loads(state.read_text())["settings"]["seed"] == 11
    other = SimServer(SimData(seed=12, keys=1), state_path=state)
    try:
        assert other.state is not None and other.state.discarded
        assert "other settings" in (other.state_note or "")
        assert "k" not in other.data.api_keys
    finally:
        other.stop()


def test_without_a_state_path_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sim = SimServer(data()).start()
    SimControl(sim.base_url).add_account("k", 1)
    sim.stop()
    assert sim.state is None and list(tmp_path.iterdir()) == []
