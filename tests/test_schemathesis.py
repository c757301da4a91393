"""schemathesis against the shim in process: every route of /openapi.json, with values made
from its own declarations (and values that break them), answers no 5xx, only statuses it
documents, with the content type and schema it documents (the event streams' events too)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api_shim.app import create_app
from callrail_sync.job import JobError, JobType, NewJob

from .conftest import OWNER

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 15
"""Cases per operation and mode (positive: values its declarations allow; negative: not)."""
STREAM_SECONDS = 0.5
"""How long an event stream is read: the events that came by then are checked. Its first line
(`: connected`) comes at once, and nothing changes while the cases run one after another, so a
longer read sees nothing more (2 s made the run 20 s longer)."""
STREAM_START_SECONDS = 5.0
"""For a stream that had not started within STREAM_SECONDS (it happened in a full run)."""


@pytest.fixture
def contract(runtime, queue, owner, stores):
    """The shim in process, with something to find: an accounts snapshot, a failed job."""
    stores.snapshots.begin("snap_st", OWNER, "accounts", None)
    records = [{"id": "ACC" + "a1" * 16, "name": "Acme", "numeric_id": 470306151}]
    stores.snapshots.write_records("accounts", "snap_st", OWNER, records)
    stores.snapshots.publish("snap_st", 1)
    job, _ = stores.jobs.create(NewJob(owner=OWNER, type=JobType.SYNC_ACCOUNTS))
    stores.jobs.fail(job.id, JobError(errno=502, message="CallRail error: boom"))
    app = create_app(runtime.settings, runtime=runtime, queue=queue)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.slow
def test_every_route_keeps_its_declared_contract(contract, token):
    sent: list[tuple[str, int]] = []
    for operation in (result.ok() for result in contract.get_all_operations()):
        label = operation.label
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: schemathesis.Case) -> None:
                def call(timeout: float) -> Any:
                    headers = {"Authorization": f"Bearer {token}"}
                    return case.call_and_validate(headers=headers, checks=CHECKS, timeout=timeout)

                if not case.operation.path.endswith("/events"):
                    response = call(60)
                else:
                    try:
                        response = call(STREAM_SECONDS)
                    except requests.exceptions.ReadTimeout:
                        # The stream had not even started (a loaded machine: four test
                        # processes on two cores); once more, with time to start.
                        response = call(STREAM_START_SECONDS)
                sent.append((case.operation.label, response.status_code))

            try:
                fuzz()
            except Unsatisfiable:  # nothing of the operation to break (no parameter, no body)
                assert mode == GenerationMode.NEGATIVE, label
    operations = {label for label, _ in sent}
    print(f"\nschemathesis: {len(sent)} requests to {len(operations)} operations, 0 failures")
    assert len(operations) == 22 and all(status < 500 for _, status in sent)
