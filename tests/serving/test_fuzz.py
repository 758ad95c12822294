"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis, bounded examples) against a real
``ntm serve`` process: no 5xx, every response matches the schema, and afterwards the server
still answers correctly."""

from __future__ import annotations

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from ntm.serving.app import create_app  # noqa: E402
from ntm.serving.plane import DataPlane  # noqa: E402
from ntm.serving.models import bundled_models  # noqa: E402
from ntm.serving.runtime import ModelRuntime  # noqa: E402
from ntm.serving.settings import ServerSettings  # noqa: E402
from tests.serving.conftest import ServerProcess  # noqa: E402

EXAMPLES_PER_OPERATION = 40
SERVER_ARGS = ["--max-time-steps", "200", "--max-body-bytes", "65536"]


def served_schema() -> dict:
    """The OpenAPI document of the app ``ntm serve`` runs, with the bundled models."""
    runtimes = [ModelRuntime(path, name=name) for name, path in bundled_models().items()]
    return create_app(DataPlane(runtimes, ServerSettings())).openapi()


schema = schemathesis.openapi.from_dict(served_schema())


@pytest.fixture(scope="module")
def server():
    process = ServerProcess(SERVER_ARGS)
    yield process
    assert process.stop() == 0


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, server):
    case.call_and_validate(base_url=server.url, timeout=30)


def test_server_still_answers_correctly_after_fuzzing(server):
    sequence = [[1, 0, 1, 1, 0, 0, 1, 0], [0, 1, 1, 0, 1, 0, 0, 1]]
    r = httpx.post(f"{server.url}/v1/models/copy:predict",
                   json={"instances": [{"sequence": sequence}]}, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0]["output"] == sequence
    assert 'status="500"' not in httpx.get(f"{server.url}/metrics").text
