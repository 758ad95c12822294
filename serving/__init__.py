"""Serving NTM models with onnxruntime alone: no TensorFlow is imported anywhere here.

Layers, one way down:
    errors     exception types that carry an HTTP status (no web framework)
    runtime    ModelRuntime: an exported ONNX model, its metadata and task codec
    models     where models come from: bundled pretrained models, names and paths
    batcher    dynamic batching of concurrent requests into one onnxruntime run
    v2codec    Open Inference Protocol (KServe V2) tensors: JSON and binary data
    app        the ASGI application (FastAPI): thin handlers over the above
"""

from ntm.serving.errors import ServingError
from ntm.serving.runtime import ModelRuntime, RuntimeOptions

__all__ = ["ModelRuntime", "RuntimeOptions", "ServingError"]
