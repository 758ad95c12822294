"""Which engine answers: the fused twin when the kernel loads (--engine auto), the standard
model when asked or when the kernel is missing (one warning), and saying so everywhere."""

from __future__ import annotations

import shutil
import warnings

import httpx
import numpy as np
import pytest

import ntm
from ntm.serving import runtime as runtime_module
from ntm.serving.errors import ModelLoadError
from ntm.serving.models import bundled_models, fused_twin
from ntm.serving.runtime import ModelRuntime
from ntm.serving.settings import RuntimeOptions
from tests.kernel.conftest import task_inputs
from tests.serving.conftest import ServerProcess


@pytest.fixture
def no_kernel(monkeypatch, tmp_path):
    """The library looked for where it is not; the warn-once memory cleared."""
    monkeypatch.setenv("NTM_OPS_LIBRARY", str(tmp_path / "missing.so"))
    monkeypatch.setattr(runtime_module, "_warned", set())


def test_auto_takes_the_fused_twin_and_answers_as_the_standard_model(kernel_library):
    fused, standard = ntm.load("copy"), ntm.load("copy", engine="standard")
    assert (fused.runtime.engine, standard.runtime.engine) == ("fused", "standard")
    assert fused.runtime.path == fused_twin(bundled_models()["copy"])
    x = task_inputs("copy", 30, 3, seed=1)
    p_fused, _ = fused.runtime.run(x)
    p_std, _ = standard.runtime.run(x)
    assert np.abs(p_fused - p_std).max() <= 1e-5


def test_without_the_kernel_auto_warns_once_and_serves_the_standard_model(no_kernel):
    with pytest.warns(RuntimeWarning, match="the fused kernel is not built"):
        first = ModelRuntime(bundled_models()["copy"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = ModelRuntime(bundled_models()["recall"])
    assert (first.engine, second.engine) == ("standard", "standard")


def test_without_the_kernel_engine_fused_is_one_clear_error(no_kernel):
    with pytest.raises(ModelLoadError, match="the fused kernel is not built"):
        ModelRuntime(bundled_models()["copy"], options=RuntimeOptions(engine="fused"))


def test_engine_fused_needs_a_twin(tmp_path, kernel_library):
    lone = tmp_path / "copy.onnx"
    shutil.copy(bundled_models()["copy"], lone)
    with pytest.raises(ModelLoadError, match="has no fused twin"):
        ModelRuntime(lone, options=RuntimeOptions(engine="fused"))
    assert ModelRuntime(lone).engine == "standard"  # auto: nothing to take


def test_a_fused_model_under_any_name_is_recognised(tmp_path, kernel_library):
    odd = tmp_path / "mine.onnx"
    shutil.copy(fused_twin(bundled_models()["copy"]), odd)
    assert ModelRuntime(odd).engine == "fused"
    with pytest.raises(ModelLoadError, match="is a fused model"):
        ModelRuntime(odd, options=RuntimeOptions(engine="standard"))


def test_ntm_serve_says_which_engine(kernel_library):
    server = ServerProcess(["--model", "copy"])
    try:
        assert any("copy" in line and "fused engine" in line for line in server.lines)
        doc = httpx.get(server.url + "/v2/models/copy").json()
        assert doc["parameters"]["engine"] == "fused"
        metrics = httpx.get(server.url + "/metrics").text
        assert 'ntm_model_engine{engine="fused",model="copy"} 1.0' in metrics
    finally:
        server.stop()
