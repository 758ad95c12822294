"""Serving NTM models with onnxruntime alone: no TensorFlow is imported anywhere here.

Layers, one way down:
    errors     exception types that carry an HTTP status (no web framework)
    settings   RuntimeOptions and ServerSettings: every default in one place
    jsondoc    strict JSON decoding; schema: request bodies as pydantic models
    runtime    ModelRuntime: an exported ONNX model, its metadata and task codec
    models     where models come from: bundled pretrained models, names and paths
    batcher    dynamic batching of concurrent requests into one onnxruntime run
    plane      the data plane: requests -> answers, for every surface below
    library    ``ntm.load(...)``: a model in process (the Python library)
    v2codec    Open Inference Protocol (KServe V2) tensors: JSON and binary data
    http, v1, v2, operations, page, app
               the ASGI application (FastAPI): one router per protocol over the plane

Importing this package is cheap: the names below load their modules on first use (the
command line reads its defaults from ``settings`` without loading onnxruntime).
"""

from __future__ import annotations

import importlib

_EXPORTS = {"ModelRuntime": "runtime", "RuntimeOptions": "settings", "ServingError": "errors",
            "load": "library", "Model": "library"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ntm.serving.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ntm.serving' has no attribute {name!r}")
