"""A real Triton Inference Server (2.51, onnxruntime backend) on what ``ntm export --format
triton`` writes for the bundled copy model, and ``ntm serve`` on the same model beside it.

The server comes from ``../shared/triton`` (its ``setup.sh`` makes a venv with the
``tritonserver`` binary and a backend directory); ``NTM_TRITON_DIR`` points elsewhere. Without
it the tests skip, saying why, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import REPO, ServerProcess, wait_until

IDLE_SECONDS = 1  # copy_idle's sequence idle timeout


def triton_dir() -> Path | None:
    """Where ``setup.sh`` lies: $NTM_TRITON_DIR, else the ``shared/triton`` beside this
    checkout."""
    candidates = [os.environ.get("NTM_TRITON_DIR"), REPO.parent / "shared" / "triton"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "setup.sh").is_file():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tritonserver(tmp_path_factory) -> tuple[Path, Path]:
    """(the tritonserver binary, its backend directory), made by setup.sh."""
    where = triton_dir()
    if where is None:
        reason = ("no real Triton here: ../shared/triton/setup.sh is absent (set NTM_TRITON_DIR "
                  "to the folder that holds it)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    base = Path(os.environ.get("NTM_TRITON_CACHE", "/tmp"))
    done = subprocess.run(["bash", str(where / "setup.sh")]
                          + ([str(base)] if "NTM_TRITON_CACHE" in os.environ else []),
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        pytest.fail(f"{where}/setup.sh failed:\n{done.stderr[-3000:]}")
    binary = Path(done.stdout.strip().splitlines()[-1])
    backends = (base / "triton-backends") if "NTM_TRITON_CACHE" in os.environ \
        else Path("/tmp/triton-backends")
    return binary, backends


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory) -> Path:
    """The bundled copy model, rebuilt as a run and exported as a Triton repository: ``copy``
    (dynamic length, ragged batching), ``copy_stateful`` (sequence batcher) and
    ``copy_idle`` (the same with a 1 s idle timeout)."""
    pytest.importorskip("tensorflow")
    from ntm.export.exporter import export_run
    from ntm.export.recover import recover
    from ntm.export.triton import TritonSettings
    from ntm.serving.models import bundled_models

    root = tmp_path_factory.mktemp("triton")
    run = root / "run"
    recover(bundled_models()["copy"], run)
    repo = root / "repository"
    export_run(run, "triton", out=repo, model_name="copy")
    export_run(run, "triton", out=repo, model_name="copy_stateful", stateful=True)
    export_run(run, "triton", out=repo, model_name="copy_idle", stateful=True,
               triton_settings=TritonSettings(sequence_idle_us=IDLE_SECONDS * 1_000_000))
    return repo


class Triton:
    """tritonserver as a real process on loopback, its log in a file."""

    def __init__(self, binary: Path, backends: Path, repository: Path, log: Path):
        self.http_port, self.grpc_port = _free_port(), _free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [str(binary), "--model-repository", str(repository),
             "--backend-directory", str(backends),
             "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
             "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
             "--allow-metrics", "false", "--strict-model-config", "true",
             "--exit-on-error", "false", "--log-verbose", "1"],
            stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.http = f"127.0.0.1:{self.http_port}"
        self.grpc = f"127.0.0.1:{self.grpc_port}"

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited: {self.log_text()[-3000:]}")
            try:
                index = httpx.post(f"http://{self.http}/v2/repository/index", timeout=5)
            except httpx.TransportError:
                return False
            models = index.json() if index.status_code == 200 else []
            # every model has left loading (READY or UNAVAILABLE with Triton's reason)
            return models and all(m.get("state") in ("READY", "UNAVAILABLE") for m in models) \
                and models

        self.index = wait_until(ready, "tritonserver to load the repository", timeout=180)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def triton(tritonserver, triton_repository, tmp_path_factory):
    binary, backends = tritonserver
    server = Triton(binary, backends, triton_repository,
                    tmp_path_factory.mktemp("triton-log") / "tritonserver.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ntm_serve(tmp_path_factory):
    """``ntm serve`` on the bundled models, the answers Triton's must equal."""
    server = ServerProcess(["--sequence-idle-s", "600"])
    yield server
    server.stop()

