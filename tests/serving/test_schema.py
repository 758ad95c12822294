"""Request bodies as pydantic models: the OpenAPI document declares the models that validate,
a validation error names its field, and what the server writes matches what it declares."""

from __future__ import annotations

import numpy as np
import pytest

from ntm.serving.app import create_app
from ntm.serving.errors import BadRequest
from ntm.serving.plane import DataPlane
from ntm.serving.requests import PredictBody, parse_instances
from ntm.serving.runtime import ModelRuntime
from ntm.serving.schema import json_schema
from ntm.serving.settings import ServerSettings
from ntm.serving.v2 import model_metadata
from ntm.serving.v2codec import InferRequestBody, InferResponseBody, ModelMetadata, \
    encode_response, parse_request


@pytest.fixture(scope="module")
def document(bundled):
    runtimes = [ModelRuntime(path, name=name) for name, path in bundled.items()]
    return create_app(DataPlane(runtimes, ServerSettings())).openapi(), runtimes


def body_schema(document, path: str) -> dict:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
        "schema"]


def without_null_defaults(node):
    """FastAPI leaves ``"default": null`` out of the document it serves; nothing else."""
    if isinstance(node, dict):
        return {k: without_null_defaults(v) for k, v in node.items()
                if not (k == "default" and v is None)}
    if isinstance(node, list):
        return [without_null_defaults(v) for v in node]
    return node


def test_the_document_declares_the_models_that_validate(document):
    doc, _ = document
    assert body_schema(doc, "/v1/models/{name}:predict") == \
        without_null_defaults(json_schema(PredictBody))
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        assert body_schema(doc, path) == without_null_defaults(json_schema(InferRequestBody))
    assert "$defs" not in str(doc["paths"])  # inlined: an operation cannot carry definitions


@pytest.mark.parametrize("payload, message", [
    ({"instances": 3}, "instances: must be a list of at least one request"),
    ({"instances": []}, "instances: must be a list of at least one request (JSON objects), "
                        "got 0 items"),
    ([], "instances: must be a list of at least one request"),
    ([{"sequence": []}, 5], "instances[1]: must be a JSON object, got a number"),
    ({"instances": [{}], "extra": 1}, "extra: unknown field; allowed: instances, "
                                      "signature_name"),
])
def test_task_api_errors_name_the_field(payload, message):
    with pytest.raises(BadRequest) as caught:
        parse_instances(payload)
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize("body, message", [
    (b"{}", "inputs: must be a non-empty list of tensors"),
    (b"[]", "request: must be a JSON object, got an array"),
    (b'{"inputs": [{"name": 1, "shape": [1], "datatype": "FP32", "data": [0]}]}',
     "inputs[0].name: must be a string, got a number"),
    (b'{"inputs": [{"name": "x", "shape": [true], "datatype": "FP32", "data": [0]}]}',
     "inputs[0].shape[0]: "),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}],'
     b' "outputs": [{"parameters": {}}]}', "outputs[0].name: is required"),
])
def test_v2_errors_name_the_field(body, message):
    with pytest.raises(BadRequest) as caught:
        parse_request(body, None)
    assert caught.value.message.startswith(message)


def test_responses_match_what_the_document_declares(document):
    _, runtimes = document
    for runtime in runtimes:
        assert ModelMetadata.model_validate(model_metadata(runtime)).name == runtime.name
    probabilities = np.zeros((2, 3, 8), np.float32)
    attention = np.zeros((2, 3, 2, 128), np.float32)
    for binary in (False, True):
        content, header = encode_response(
            "copy", "1", "request-7", [("probabilities", probabilities, False),
                                       ("attention", attention, binary)],
            {"within_training_range": True, "memory_size": 128})
        body = InferResponseBody.model_validate_json(content[:header])
        assert [o.shape for o in body.outputs] == [[2, 3, 8], [2, 3, 2, 128]]
        assert (body.outputs[1].data is None) == binary
