"""`callrail-sync serve` as a newcomer runs it: one process, embedded defaults, real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_the_whole_flow_with_no_services(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MONGO_URL", "CALLRAIL_BASE_URL", "JWT_SECRET", "BROKER_URL", "RESULT_BACKEND")
    }
    env["REDIS_URL"] = (
        "redis://127.0.0.1:9/0"  # nothing listens there: the in-process broker is used
    )
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "callrail_sync.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        log.seek(0)
        printed = log.read()
        assert "broker: in-process" in printed and "store: in-process" in printed
        token = next(
            line.split(" ", 1)[1] for line in printed.splitlines() if line.startswith("token: ")
        )
        assert (
            f"curl -s -H 'Authorization: Bearer {token}' '{base}/v1/e/callrail/accounts'" in printed
        )
        headers = {"Authorization": f"Bearer {token}"}
        first = requests.get(f"{base}/v1/e/callrail/accounts", headers=headers, timeout=10)
        assert first.status_code == 202
        status_url = first.json()["data"]["status_url"]
        job = requests.get(f"{base}{status_url}?wait=20", headers=headers, timeout=30).json()[
            "data"
        ]
        assert job["status"] == "succeeded", job
        page = requests.get(f"{base}/v1/e/callrail/accounts", headers=headers, timeout=10).json()
        assert page["data"]["total_records"] == 3
        assert requests.get(base + "/readyz", timeout=5).json()["data"] == {
            "mongo": True,
            "broker": True,
        }
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
