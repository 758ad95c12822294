"""The Open Inference Protocol (KServe V2): thin handlers over the data plane.

``/v2``, ``/v2/health/live``, ``/v2/health/ready`` (the protocol's own health checks),
``/v2/models/{name}[/versions/{version}]``, ``/v2/models/{name}/ready`` and
``POST /v2/models/{name}[/versions/{version}]/infer`` with JSON or binary tensors
(``ntm.serving.v2codec``).
"""

from __future__ import annotations


from fastapi import APIRouter, Request
from fastapi.responses import Response

import ntm
from ntm.contract import metadata as meta
from ntm.serving.errors import BadRequest, NotFound
from ntm.serving.http import INFER_ERRORS, READ_ERRORS, counted, decode_body, \
    error_response, errors, read_body
from ntm.serving.plane import DataPlane
from ntm.serving.schema import json_schema, request_body
from ntm.serving.v2codec import HEADER_LENGTH, InferRequestBody, InferResponseBody, \
    VERSION, ModelMetadata, check_output_names, encode_response, model_metadata, parse_request

# JSON, or the binary tensor extension when the request asks for binary outputs.
INFER_RESPONSES = {**INFER_ERRORS, 200: {"description": "output tensors", "content": {
    "application/json": {"schema": json_schema(InferResponseBody)},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
INFER_BODY = request_body(InferRequestBody)
METADATA_RESPONSES = {200: {"model": ModelMetadata}, **READ_ERRORS}


def router(plane: DataPlane) -> APIRouter:
    """The V2 routes over ``plane``."""
    api = APIRouter()

    @api.get("/v2", summary="Server metadata (V2)", responses=errors(401))
    async def v2_server():
        return {"name": "ntm", "version": ntm.__version__, "extensions": ["binary_tensor_data"]}

    @api.get("/v2/health/live", summary="Liveness (V2)")
    async def v2_live():
        return {"live": True}

    @api.get("/v2/health/ready", summary="Readiness (V2)", responses=errors(503))
    async def v2_ready():
        if not plane.ready:
            return error_response(503, "not ready")
        return {"ready": True}

    @api.get("/v2/models/{name}", summary="Model metadata (V2)", responses=METADATA_RESPONSES)
    async def v2_model(name: str):
        return model_metadata(plane.get(name))

    @api.get("/v2/models/{name}/versions/{version}", summary="Model metadata (V2)",
             responses=METADATA_RESPONSES)
    async def v2_model_version(name: str, version: str):
        check_version(version)
        return model_metadata(plane.get(name))

    @api.get("/v2/models/{name}/ready", summary="Model readiness (V2)", responses=READ_ERRORS)
    async def v2_model_ready(name: str):
        plane.get(name)
        return {"name": name, "ready": plane.ready}

    @api.post("/v2/models/{name}/infer", summary="Inference on raw tensors (V2)",
              openapi_extra=INFER_BODY, responses=INFER_RESPONSES)
    async def v2_infer(name: str, request: Request):
        return await counted_infer(plane, name, request)

    @api.post("/v2/models/{name}/versions/{version}/infer",
              summary="Inference on raw tensors (V2)", openapi_extra=INFER_BODY,
              responses=INFER_RESPONSES)
    async def v2_infer_version(name: str, version: str, request: Request):
        async def work():
            check_version(version)
            return await infer(plane, name, request)
        return await counted(plane, name, "v2", request, work)

    return api


async def counted_infer(plane: DataPlane, name: str, request: Request) -> Response:
    """``POST /v2/models/{name}/infer``, counted in the metrics (also answered by
    ``ntm.serving.hotpaths`` without FastAPI's routing)."""
    return await counted(plane, name, "v2", request, lambda: infer(plane, name, request))


async def infer(plane: DataPlane, name: str, request: Request) -> Response:
    """One infer request: decode the tensors, run them through the plane, encode the
    outputs asked for (all the model has by default; binary when asked)."""
    outputs = plane.get(name).parts.outputs
    body = await read_body(request, plane.settings.max_body_bytes)
    if request.headers.get("content-encoding"):
        raise BadRequest("Content-Encoding is not supported; send the body uncompressed")
    header_length = request.headers.get(HEADER_LENGTH.lower())
    parsed = await decode_body(body, lambda data: parse_request(data, header_length))
    wanted = parsed.outputs or [(n, parsed.binary_default) for n in outputs]
    check_output_names([n for n, _ in wanted], outputs)
    tensors, parameters = await plane.infer(name, parsed.inputs, parsed.sequence,
                                            attention=any(n == meta.ATTENTION for n, _ in wanted))
    content, header = encode_response(
        name, VERSION, parsed.id, [(n, tensors[n], b) for n, b in wanted], parameters)
    if header is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(header)})


def check_version(version: str) -> None:
    if version != VERSION:
        raise NotFound(f"version {version!r} is not served; versions: {VERSION}")
