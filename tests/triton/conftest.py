"""A real Triton Inference Server (2.51, onnxruntime backend) on what ``ntm export --format
triton`` writes for the bundled copy model, and ``ntm serve`` on the same model beside it.

The server comes from ``../shared/triton`` (its ``setup.sh`` makes a venv with the
``tritonserver`` binary and a backend directory); ``NTM_TRITON_DIR`` points elsewhere. Without
it the tests skip, saying why, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.loadgen import TritonServer, setup_triton
from tests.serving.conftest import REPO, ServerProcess

IDLE_SECONDS = 1  # copy_idle's sequence idle timeout


def triton_dir() -> Path | None:
    """Where ``setup.sh`` lies: $NTM_TRITON_DIR, else the ``shared/triton`` beside this
    checkout."""
    candidates = [os.environ.get("NTM_TRITON_DIR"), REPO.parent / "shared" / "triton"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "setup.sh").is_file():
            return Path(candidate)
    return None


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
    try:
        return setup_triton(where, Path(os.environ.get("NTM_TRITON_CACHE", "/tmp")))
    except RuntimeError as err:
        pytest.fail(str(err))


BASELINE_MODELS = {"copy_lstm": {}, "copy_lstm_stateful": {"stateful": True},
                   "copy_lstm_fixed9": {"length": 9}}  # the LSTM baseline's entries


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory, baseline_run, learned_memory_run) -> Path:
    """The bundled copy model, rebuilt as a run and exported as a Triton repository: ``copy``
    (dynamic length, ragged batching), ``copy_stateful`` (sequence batcher) and
    ``copy_idle`` (the same with a 1 s idle timeout) and ``copy_fixed41`` (41 steps, unrolled);
    with the kernel built, ``copy_fused`` and ``copy_fused_stateful`` (``--kernel fused``); a
    tiny LSTM baseline of copy (``baseline_run``) as ``copy_lstm``, ``copy_lstm_stateful``
    and ``copy_lstm_fixed9``; a tiny NTM with a learned initial memory (``learned_memory_run``)
    as ``copy_learned`` and, with the kernel built, ``copy_learned_fused``; and every other
    bundled model under its own name (``-`` as ``_``), with its ``_fused`` twin when the kernel
    is built."""
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
    export_run(run, "triton", out=repo, model_name="copy_fixed41", length=41)
    for name, options in BASELINE_MODELS.items():
        export_run(baseline_run, "triton", out=repo, model_name=name, **options)
    from ntm.contract.kernel_library import find_library

    fused = find_library() is not None
    export_run(learned_memory_run, "triton", out=repo, model_name="copy_learned")
    if fused:  # the fused kernel's entries (tests/triton/test_fused.py, test_learned_memory.py)
        export_run(learned_memory_run, "triton", out=repo, model_name="copy_learned_fused",
                   kernel="fused")
        export_run(run, "triton", out=repo, model_name="copy_fused", kernel="fused")
        export_run(run, "triton", out=repo, model_name="copy_fused_stateful", stateful=True,
                   kernel="fused")
    for name, path in bundled_models().items():  # tests/triton/test_bundled_models.py
        if name == "copy":
            continue
        other = root / f"run-{name}"
        recover(path, other)
        export_run(other, "triton", out=repo, model_name=triton_name(name))
        if fused:
            export_run(other, "triton", out=repo, model_name=triton_name(name) + "_fused",
                       kernel="fused")
    return repo


def triton_name(bundled: str) -> str:
    """The Triton entry of a bundled model (``ntm export --format triton``'s own name)."""
    return bundled.replace("-", "_")


@pytest.fixture(scope="session")
def triton(tritonserver, triton_repository, tmp_path_factory):
    binary, backends = tritonserver
    # verbose: the sequence batcher logs when it ends an idle sequence (a test waits on it)
    server = TritonServer(binary, backends, triton_repository,
                          tmp_path_factory.mktemp("triton-log") / "tritonserver.log",
                          verbose=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clients(triton):
    """{"http" | "grpc": (a tritonclient client of the running Triton, its module)}."""
    http = pytest.importorskip("tritonclient.http")
    grpc = pytest.importorskip("tritonclient.grpc")
    return {"http": (http.InferenceServerClient(triton.http), http),
            "grpc": (grpc.InferenceServerClient(triton.grpc), grpc)}


@pytest.fixture(scope="session")
def ntm_serve(tmp_path_factory):
    """``ntm serve`` on the bundled models, the answers Triton's must equal."""
    server = ServerProcess(["--sequence-idle-s", "600"])
    yield server
    server.stop()


