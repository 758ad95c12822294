"""The deployment files stay true to the code: manifests parse, their probe paths are real
endpoints, and every ``ntm serve`` flag they use exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from ntm.cli.serve import serve  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SERVE_FLAGS = {opt for p in serve.params for opt in p.opts}


def served_paths() -> set[str]:
    from ntm.serving.app import create_app
    from ntm.serving.plane import DataPlane
    from ntm.serving.models import bundled_models
    from ntm.serving.runtime import ModelRuntime
    from ntm.serving.settings import ServerSettings

    runtimes = [ModelRuntime(p, name=n) for n, p in bundled_models().items()]
    return set(create_app(DataPlane(runtimes, ServerSettings())).openapi()["paths"])


def flags(command: list[str]) -> list[str]:
    assert command[:2] == ["ntm", "serve"], command
    return [arg for arg in command[2:] if arg.startswith("--")]


def test_kserve_manifests():
    paths = served_paths()
    manifests = sorted((DEPLOY / "kserve").glob("*.yaml"))
    assert len(manifests) == 2
    for manifest in manifests:
        doc = yaml.safe_load(manifest.read_text())
        assert doc["apiVersion"] == "serving.kserve.io/v1beta1"
        assert doc["kind"] == "InferenceService"
        predictor = doc["spec"]["predictor"]
        for container in predictor.get("containers", []):
            assert set(flags(container["args"])) <= SERVE_FLAGS
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["path"] in paths
        if "model" in predictor:
            assert predictor["model"]["protocolVersion"] == "v2"


def test_dockerfile_runs_ntm_serve_with_real_flags():
    text = (DEPLOY / "Dockerfile").read_text()
    command = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert set(flags(command)) <= SERVE_FLAGS
    for copied in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (DEPLOY.parent / copied).exists(), copied
