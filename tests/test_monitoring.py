"""The operators' kit (monitoring/): the alert rules pass promtool's checks and unit tests,
every metric the rules and dashboards name is one the service exports, the readings the shim
takes at each scrape are true, and the Compose profile is wired (checked statically: Compose
cannot run here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from callrail_sync.budget import unit_for
from callrail_sync.job import JobParams, JobType
from tasks.schedule import plan_syncs
from tasks.submit import submit

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
RULES = MONITORING / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
PROMTOOL = shutil.which("promtool")
INSTALL = "apt-get install -y prometheus (as root; ./dev test does it when root)"
PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself for each target (not the service's)."""
PROMQL_WORDS = frozenset(
    # aggregations, functions and keywords the rules and dashboards use
    re.findall(
        r"\S+",
        "sum max min avg count rate increase changes absent time histogram_quantile clamp_min "
        "clamp_max and or unless by without on ignoring group_left group_right bool offset",
    )
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.skip(f"promtool tests skipped: no promtool; install: {INSTALL}")
    return subprocess.run(
        [PROMTOOL, *args], cwd=MONITORING / "prometheus", capture_output=True, text=True
    )


def test_promtool_checks_the_config_and_the_rules() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")):
        checked = promtool(*args)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_promtool_unit_tests_fire_each_alert_on_its_condition() -> None:
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Each alert has a test in which it fires (exp_alerts not empty).
    suite = yaml.safe_load((MONITORING / "prometheus" / "alerts.test.yml").read_text())
    fired = {
        case["alertname"]
        for test in suite["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == set(alerts()), set(alerts()) - fired


def alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (not its functions, labels or numbers)."""
    e = re.sub(r'"[^"]*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    return set(re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", e)) - PROMQL_WORDS


def test_the_name_reader_finds_series_and_nothing_else() -> None:
    expr = (
        '1 - max by (account, window) (callrail_budget_left{window="hour"}) / on (window) '
        "group_left () max by (window) (callrail_budget_limit) > 0.1e3 and "
        "histogram_quantile(0.95, sum by (le) (rate(callrail_sync_duration_seconds_bucket[15m])))"
    )
    assert metric_names(expr) == {
        "callrail_budget_left",
        "callrail_budget_limit",
        "callrail_sync_duration_seconds_bucket",
    }


def exported(text: str) -> set[str]:
    """The series names a Prometheus text exposition can have, from its TYPE lines (a family
    with no sample yet is still declared)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        base = name.removesuffix("_total") if kind == "counter" else name
        names.update(base + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def metrics_text(metrics_url: str) -> str:
    """The service's metrics, where the shim serves them (a port of its own; the worker serves
    the same library's counters on METRICS_PORT)."""
    answer = requests.get(metrics_url, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.text


def dashboard_queries() -> list[tuple[str, str, str]]:
    return [
        (path.name, panel["title"], target["expr"])
        for path in DASHBOARDS
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_series_the_rules_and_dashboards_name_is_exported(metrics_url: str) -> None:
    names = exported(metrics_text(metrics_url)) | PROMETHEUS_OWN
    for name, rule in alerts().items():
        missing = metric_names(rule["expr"]) - names
        assert not missing, f"alert {name} names {missing}, which the service does not export"
    assert dashboard_queries()
    for dashboard, title, expr in dashboard_queries():
        missing = metric_names(expr) - names
        assert not missing, f"{dashboard}: panel {title!r} names {missing}, not exported"


def test_the_dashboards_are_grafana_json_on_the_provisioned_source() -> None:
    provisioned = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = provisioned["datasources"][0]["uid"]
    assert DASHBOARDS
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        cells: set[tuple[int, int]] = set()
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"] and all(t["datasource"]["uid"] == uid for t in panel["targets"])
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24
            area = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not area & cells, f"panel {panel['title']!r} overlaps another"
            cells |= area
    wanted = {
        "jobs by state and lane": "callrail_jobs_active",
        "queue depth": "callrail_queue_messages",
        "requests by account": "callrail_account_requests_total",
        "429s": 'status="429"',
        "budget used": "callrail_budget_left",
        "sync durations": "callrail_sync_duration_seconds_bucket",
        "inbound deliveries": "callrail_inbound_deliveries_total",
        "notification outcomes": "callrail_notification_attempts_total",
    }
    queries = " ".join(expr for _, _, expr in dashboard_queries())
    assert not [what for what, needle in wanted.items() if needle not in queries]


def test_each_alert_has_a_summary_and_a_runbook_in_the_docs() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", doc, flags=re.M)
    }
    for name, rule in alerts().items():
        notes = rule["annotations"]
        assert notes["summary"] and rule["labels"]["severity"] in ("warning", "critical")
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "docs/monitoring.md" and anchor == name.lower(), notes["runbook"]
        assert anchor in anchors, f"docs/monitoring.md has no section for {name}"


def test_the_compose_profile_runs_prometheus_and_grafana_on_these_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    kit = {n for n, s in services.items() if "monitoring" in s.get("profiles", [])}
    assert kit == {"prometheus", "grafana"}
    for name in kit:
        for volume in services[name]["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
            else:
                assert source in compose["volumes"], volume
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus"] == "./monitoring/prometheus"
    command = services["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    grafana = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    provider = yaml.safe_load(
        (MONITORING / "grafana/provisioning/dashboards/callrail.yml").read_text()
    )
    assert grafana[provider["providers"][0]["options"]["path"]] == "./monitoring/grafana/dashboards"
    assert grafana["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name in {p.name for p in DASHBOARDS}
    # The scrape targets are the services of this file, at the ports they listen on.
    config = yaml.safe_load((MONITORING / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    shim_target = jobs["callrail-shim"]["static_configs"][0]["targets"][0]
    host, port = shim_target.split(":")
    # The shim's metrics port (never its public one), on the internal network only.
    assert host in services and services[host]["environment"]["SHIM_METRICS_PORT"] == port
    assert port in services[host]["expose"] and f"--port {port}" not in str(services[host])
    for job, service in (("callrail-worker", "worker"), ("callrail-notifier", "notifier")):
        found = jobs[job]["dns_sd_configs"][0]
        assert found["names"] == [service] and str(found["port"]) in services[service]["expose"]
    for process in ("shim", "worker", "notifier"):  # several processes each: counts summed
        assert "PROMETHEUS_MULTIPROC_DIR" in services[process]["environment"]


# --- the readings the shim takes at each scrape ----------------------------------------------


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        series, value = line.rsplit(" ", 1)
        found_name, _, label_text = series.partition("{")
        if found_name == name and dict(re.findall(r'(\w+)="([^"]*)"', label_text)) == labels:
            return float(value)
    return None


def test_the_readings_say_what_waits_and_what_is_left(
    metrics_url: str, runtime: Any, stores: Any, queue: Any, owner: str
) -> None:
    """No worker runs here: a job submitted waits in its queue, and the metrics say so."""
    account = "ACC0123456789abcdef0123456789abcdef"
    before = metrics_text(metrics_url)
    assert sample(before, "callrail_queue_messages", queue="listings") == 0
    assert sample(before, "callrail_beat_last_plan_timestamp_seconds") == 0
    assert sample(before, "callrail_job_waiting_seconds_max", lane="interactive") == 0

    job, _ = submit(stores.jobs, queue, owner, JobType.SYNC_ACCOUNTS, JobParams())
    stores.userconfig.set(owner, [account])
    runtime.budget.acquire(unit_for("", f"/a/{account}/companies.json"))
    planned_at = time.time()
    plan_syncs(runtime, queue)  # beat's plan: its heartbeat, and the periodic sync it queues

    asked = time.time()
    after = metrics_text(metrics_url)
    answered = time.time()
    assert sample(after, "callrail_queue_messages", queue="listings") == 1
    assert sample(after, "callrail_queue_messages", queue="periodic") == 1
    active = {"type": "sync_accounts", "status": "queued", "lane": "interactive"}
    assert sample(after, "callrail_jobs_active", **active) == 1
    waited = sample(after, "callrail_job_waiting_seconds_max", lane="interactive")
    queued_at = job.updated_at.timestamp()  # in line since then, and no worker here
    assert waited is not None and asked - queued_at - 0.01 <= waited <= answered - queued_at + 0.01
    beat = sample(after, "callrail_beat_last_plan_timestamp_seconds")
    assert beat is not None and planned_at - 1 <= beat <= time.time()
    limit = runtime.settings.hourly_limit
    assert sample(after, "callrail_budget_limit", window="hour") == limit
    assert sample(after, "callrail_budget_left", account=account, window="hour") == limit - 1
    assert sample(after, "callrail_backfills_unfinished") == 0
    assert job.id  # the job the readings counted
