"""The fused kernel's tests need the built library (``ntm build-kernel``; .ci/run builds it).
Without it they skip, saying so, except under ``CI=true``, where they fail."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ntm.kernel.library import find_library
from ntm.serving.models import bundled_models, fused_twin

TASKS = ("copy", "recall", "repeat-copy")


@pytest.fixture(scope="session")
def kernel_library() -> Path:
    found = find_library()
    if found is None:
        reason = "the fused kernel is not built (run `ntm build-kernel`)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def session(path_or_bytes, fused: bool, threads: int = 1):
    import onnxruntime as ort

    from ntm.kernel.library import register

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if fused:
        register(options)
    source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def engines(kernel_library):
    """{task: (standard session, fused session)} of the bundled models and their twins."""
    models = bundled_models()
    return {t: (session(models[t], False), session(fused_twin(models[t]), True))
            for t in TASKS}


def task_inputs(task: str, length: int, batch: int, seed: int) -> np.ndarray:
    """[batch, time, in] fresh inputs of ``task`` at ``length`` (items for recall)."""
    from ntm.contract.tasks import Difficulty, get_task

    t = get_task(task)
    rng = np.random.default_rng(seed)
    repeats = None if t.train_repeats is None else t.train_repeats[1]
    return np.stack([t.sequence(rng, Difficulty(length, repeats))[0]
                     for _ in range(batch)]).astype(np.float32)
