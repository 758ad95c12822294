"""Sessions and inputs for the fused kernel's tests (the ``kernel_library`` fixture, which they
all need, is in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ntm.serving.models import bundled_models, fused_twin

TASKS = ("copy", "recall", "repeat-copy")


def session(path_or_bytes, fused: bool, threads: int = 1):
    import onnxruntime as ort

    from ntm.contract.kernel_library import register

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
