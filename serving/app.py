"""The ASGI application: thin HTTP handlers over the model runtime and the batcher.

Surfaces (one data plane behind all of them):
- TensorFlow Serving REST: POST /v1/models/{name}:predict {"instances": [...]} ->
  {"predictions": [...]}; GET /v1/models/{name}; GET /v1/models/{name}/metadata
- Open Inference Protocol (KServe V2): /v2, /v2/health/live, /v2/health/ready,
  /v2/models/{name}, /v2/models/{name}/ready, POST /v2/models/{name}/infer (JSON and binary)
- GET /metrics (Prometheus), GET /openapi.json, GET /v1/models (a listing)
- GET / : a page that runs the models in a browser (ntm.serving.page; not in the OpenAPI document)
Every error is {"error": "..."} with a 4xx status for bad input; 5xx only for server faults.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

import ntm
from ntm.contract import metadata as meta
from ntm.serving import jsondoc, page
from ntm.serving.batcher import Batcher
from ntm.serving.errors import BadRequest, NotFound, ServingError, TooLarge
from ntm.serving.metrics import Metrics
from ntm.serving.requests import parse_instances
from ntm.serving.runtime import ModelRuntime, wants_attention
from ntm.serving.settings import ServerSettings
from ntm.serving.v2codec import HEADER_LENGTH, encode_response, parse_request

VERSION = "1"
# The page loads without the key: the person types it into the page, which sends it.
PUBLIC_PATHS = ("/v2/health/live", "/v2/health/ready") + page.PUBLIC_PATHS
REQUEST_SCHEMA = {
    "oneOf": [
        {"type": "object", "properties": {"instances": {"type": "array", "items": {"type": "object"}}},
         "required": ["instances"]},
        {"type": "object"},
    ]
}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=int(status), headers=headers)


class ModelServer:
    """The models, their batchers, the metrics and the settings of one server process."""

    def __init__(self, runtimes: list[ModelRuntime], settings: ServerSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.runtimes = {r.name: r for r in runtimes}
        self.executor = ThreadPoolExecutor(max_workers=settings.inference_threads,
                                           thread_name_prefix="onnxruntime")
        self.batchers = {
            r.name: Batcher(r, self.executor, self.metrics, settings.max_batch_size,
                            settings.max_queue_delay_ms / 1000.0, settings.batching,
                            max_in_flight=settings.inference_threads)
            for r in runtimes}
        self.ready = False

    def get(self, name: str) -> ModelRuntime:
        if name not in self.runtimes:
            raise NotFound(f"model {name!r} is not served here; served: "
                           f"{', '.join(sorted(self.runtimes))}")
        return self.runtimes[name]

    async def start(self) -> None:
        for b in self.batchers.values():
            await b.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await asyncio.gather(*(b.close() for b in self.batchers.values()))
        self.executor.shutdown(wait=True)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


ERROR_SCHEMA = {"type": "object", "required": ["error"],
                "properties": {"error": {"type": "string"}}}
ERROR_MEANINGS = {400: "malformed request", 401: "missing or wrong API key",
                  404: "no such model, version or endpoint", 413: "body over the size limit",
                  422: "well-formed but over a limit (length, batch)",
                  500: "the model failed on this request", 503: "not ready or shutting down"}


def errors(*codes: int) -> dict:
    """OpenAPI ``responses`` for error statuses: every error body is {"error": message}."""
    return {code: {"description": ERROR_MEANINGS[code],
                   "content": {"application/json": {"schema": ERROR_SCHEMA}}} for code in codes}


READ_ERRORS = errors(400, 401, 404, 500)  # GET endpoints that name a model
INFER_ERRORS = errors(400, 401, 404, 413, 422, 500, 503)  # inference endpoints


class ApiKeyGuard:
    """ASGI middleware: every HTTP path but PUBLIC_PATHS needs the key, sent as
    ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (compared in constant time).

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each
    request through an extra task and stream, which cost more than the key check itself.
    """

    def __init__(self, app, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            headers = dict(scope["headers"])
            supplied = headers.get(b"x-api-key", b"")
            auth = headers.get(b"authorization", b"")
            if not supplied and auth.lower().startswith(b"bearer "):
                supplied = auth[7:]
            if not hmac.compare_digest(supplied, self.key):
                response = error_response(401, "missing or wrong API key: send "
                                               "'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(server: ModelServer) -> FastAPI:
    """The FastAPI application serving ``server``'s models."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(title="ntm", version=ntm.__version__, lifespan=lifespan,
                  description="Neural Turing Machine inference on onnxruntime: TensorFlow "
                              "Serving REST and Open Inference Protocol (V2) surfaces.")
    settings = server.settings

    if settings.api_key:
        app.add_middleware(ApiKeyGuard, api_key=settings.api_key)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError):
        return error_response(err.status, err.message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception):
        return error_response(500, f"internal error: {type(err).__name__}")

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        message = err.detail if isinstance(err.detail, str) else json.dumps(err.detail)
        if err.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif err.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        # Keep the exception's headers: a 405 must say which methods are allowed (Allow).
        return error_response(err.status_code, message, getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        return error_response(400, f"invalid request: {err.errors()[:1]}")

    async def timed(name: str, protocol: str, work):
        start = time.perf_counter()
        status = 500
        model = name if name in server.runtimes else "_unknown"
        in_flight = server.metrics.in_flight.labels(model, protocol)
        in_flight.inc()
        try:
            response = await work()
            status = response.status_code
            return response
        except ServingError as err:
            status = int(err.status)
            return error_response(err.status, err.message)
        finally:
            in_flight.dec()
            server.metrics.observe_request(model, protocol, status, time.perf_counter() - start)

    # -- TensorFlow Serving REST ------------------------------------------------------------
    @app.get("/v1/models", summary="List served models", responses=errors(401))
    async def v1_list():
        return {"models": [r.describe() for r in server.runtimes.values()]}

    @app.post("/v1/models/{name}:predict", summary="Task API (TensorFlow Serving envelope)",
              responses=INFER_ERRORS, openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": REQUEST_SCHEMA}}}})
    async def v1_predict(name: str, request: Request):
        async def work():
            runtime = server.get(name)
            body = await read_body(request, settings.max_body_bytes)
            instances = parse_instances(jsondoc.loads(body, "request"), settings.max_instances)
            fields = [f"instances[{i}]" for i in range(len(instances))]
            encoded = [runtime.encode(r, f) for r, f in zip(instances, fields)]
            flags = [wants_attention(r) for r in instances]
            sizes = [runtime.request_memory_size(e, f) for e, f in zip(encoded, fields)]
            results = await server.batchers[name].submit_grouped([e.inputs for e in encoded],
                                                                 sizes)
            answers = [runtime.decode(p, a, e, f)
                       for (p, a), e, f in zip(results, encoded, flags)]
            for answer in answers:
                server.metrics.observe_sequences(name, answer["memory_size"],
                                                 answer["within_training_range"])
            return JSONResponse({"predictions": answers})
        return await timed(name, "v1", work)

    @app.get("/v1/models/{name}", summary="Model status (TensorFlow Serving)",
             responses=READ_ERRORS)
    async def v1_status(name: str):
        server.get(name)
        return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    @app.get("/v1/models/{name}/metadata", summary="Model metadata (TensorFlow Serving)",
             responses=READ_ERRORS)
    async def v1_metadata(name: str):
        runtime = server.get(name)
        return {"model_spec": {"name": name, "signature_name": "serving_default",
                               "version": VERSION},
                "metadata": {"ntm": runtime.metadata, "summary": runtime.describe(),
                             "signature_def": v2_model_metadata(runtime)}}

    # -- Open Inference Protocol (V2) -------------------------------------------------------
    @app.get("/v2", summary="Server metadata (V2)", responses=errors(401))
    async def v2_server():
        return {"name": "ntm", "version": ntm.__version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", summary="Liveness (V2)")
    async def v2_live():
        return {"live": True}

    @app.get("/v2/health/ready", summary="Readiness (V2)", responses=errors(503))
    async def v2_ready():
        if not server.ready:
            return error_response(503, "not ready")
        return {"ready": True}

    @app.get("/v2/models/{name}", summary="Model metadata (V2)",
             responses=READ_ERRORS)
    async def v2_model(name: str):
        return v2_model_metadata(server.get(name))

    @app.get("/v2/models/{name}/versions/{version}", summary="Model metadata (V2)",
             responses=READ_ERRORS)
    async def v2_model_version(name: str, version: str):
        check_version(version)
        return v2_model_metadata(server.get(name))

    @app.get("/v2/models/{name}/ready", summary="Model readiness (V2)",
             responses=READ_ERRORS)
    async def v2_model_ready(name: str):
        server.get(name)
        return {"name": name, "ready": server.ready}

    async def v2_infer(name: str, request: Request):
        async def work():
            runtime = server.get(name)
            body = await read_body(request, settings.max_body_bytes)
            if request.headers.get("content-encoding"):
                raise BadRequest("Content-Encoding is not supported; send the body "
                                 "uncompressed")
            parsed = parse_request(body, request.headers.get(HEADER_LENGTH.lower()))
            if meta.INPUT_NAME not in parsed.inputs or \
                    not set(parsed.inputs) <= {meta.INPUT_NAME, meta.MEMORY_SIZE_NAME}:
                raise BadRequest(f"inputs: model {name} takes the input '{meta.INPUT_NAME}' "
                                 f"and optionally '{meta.MEMORY_SIZE_NAME}', got "
                                 f"{sorted(parsed.inputs)}")
            x = runtime.check_inputs(parsed.inputs[meta.INPUT_NAME])
            rows = runtime.memory_size_for_inputs(
                x, requested_rows(parsed.inputs.get(meta.MEMORY_SIZE_NAME)))
            within = x.shape[1] <= runtime.task.max_trained_time_steps
            server.metrics.observe_sequences(name, rows, within, len(x))
            results = await server.batchers[name].submit(list(x), rows)
            tensors = {meta.PROBABILITIES: np.stack([p for p, _ in results]),
                       meta.ATTENTION: np.stack([a for _, a in results])}
            wanted = parsed.outputs or [(n, parsed.binary_default) for n in tensors]
            unknown = [n for n, _ in wanted if n not in tensors]
            if unknown:
                raise BadRequest(f"outputs: {unknown[0]!r} is not an output; outputs: "
                                 f"{', '.join(tensors)}")
            content, header = encode_response(
                name, VERSION, parsed.id, [(n, tensors[n], b) for n, b in wanted],
                {"within_training_range": within, meta.MEMORY_SIZE_NAME: rows})
            if header is None:
                return Response(content, media_type="application/json")
            return Response(content, media_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(header)})
        return await timed(name, "v2", work)

    infer_doc = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": {"type": "object"}},
            "outputs": {"type": "array", "items": {"type": "object"}},
            "parameters": {"type": "object"}}}}}}}
    # JSON, or the binary tensor extension when the request asks for binary outputs.
    INFER_RESPONSES = {**INFER_ERRORS, 200: {"description": "output tensors", "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
    app.add_api_route("/v2/models/{name}/infer", v2_infer, methods=["POST"],
                      summary="Inference on raw tensors (V2)", openapi_extra=infer_doc,
                      responses=INFER_RESPONSES)

    async def v2_infer_version(name: str, version: str, request: Request):
        check_version(version)
        return await v2_infer(name, request)

    app.add_api_route("/v2/models/{name}/versions/{version}/infer", v2_infer_version,
                      methods=["POST"], summary="Inference on raw tensors (V2)",
                      openapi_extra=infer_doc, responses=INFER_RESPONSES)

    # -- operations -------------------------------------------------------------------------
    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
             responses=errors(401))
    async def metrics():
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    page.add_page_routes(app, server.runtimes)
    return app


def requested_rows(tensor: np.ndarray | None) -> int | None:
    """The rows a V2 request asks for through its optional ``memory_size`` input (integers,
    any shape; the largest counts, as the exported model does) or None."""
    if tensor is None:
        return None
    if tensor.size == 0 or not np.issubdtype(tensor.dtype, np.integer):
        raise BadRequest(f"inputs: '{meta.MEMORY_SIZE_NAME}' must hold at least one integer "
                         f"(INT32 or INT64)")
    return int(tensor.max())


def check_version(version: str) -> None:
    if version != VERSION:
        raise NotFound(f"version {version!r} is not served; versions: {VERSION}")


def v2_model_metadata(runtime: ModelRuntime) -> dict[str, Any]:
    t = runtime.fixed_length or -1
    return {
        "name": runtime.name,
        "versions": [VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": meta.INPUT_NAME, "datatype": "FP32",
                    "shape": [-1, t, runtime.input_size]}],
        "outputs": [
            {"name": meta.PROBABILITIES, "datatype": "FP32",
             "shape": [-1, t, runtime.output_size]},
            {"name": meta.ATTENTION, "datatype": "FP32",
             "shape": [-1, t, runtime.num_heads,
                       -1 if runtime.grows else runtime.fixed_memory_size]},
        ],
    }
