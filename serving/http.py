"""What every HTTP surface shares: the one map from errors to responses, the error documents,
the body reader (and where a body is decoded) and the request metrics around a handler.

Every error is ``{"error": message}``: a ``ServingError`` with its own status, any other
``NtmError`` 400, FastAPI's own 404/405/validation errors reworded, anything else 500.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ntm.contract.errors import NtmError
from ntm.serving import jsondoc
from ntm.serving.errors import ServingError, TooLarge
from ntm.serving.plane import DataPlane


class ErrorBody(BaseModel):
    """Every error response."""

    error: str


ERROR_MEANINGS = {400: "malformed request", 401: "missing or wrong API key",
                  404: "no such model, version or endpoint",
                  405: "method not allowed on this path (the Allow header names the one that is)",
                  413: "body over the size limit",
                  422: "well-formed but over a limit (length, batch)",
                  500: "the model failed on this request", 503: "not ready or shutting down"}


def errors(*codes: int) -> dict:
    """OpenAPI ``responses`` for error statuses: every error body is an ``ErrorBody``."""
    return {code: {"description": ERROR_MEANINGS[code], "model": ErrorBody} for code in codes}


READ_ERRORS = errors(400, 401, 404, 500)  # GET endpoints that name a model
INFER_ERRORS = errors(400, 401, 404, 413, 422, 500, 503)  # inference endpoints


class AnswerResponse(JSONResponse):
    """A JSON response encoded by ``jsondoc.dumps`` (orjson): every answer and error."""

    def render(self, content) -> bytes:
        return jsondoc.dumps(content)


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return AnswerResponse({"error": message}, status_code=int(status), headers=headers)


def response_for(err: Exception, request: Request) -> JSONResponse:
    """The one map from an error to its response."""
    if isinstance(err, ServingError):
        return error_response(err.status, err.message)
    if isinstance(err, NtmError):
        return error_response(400, str(err))
    if isinstance(err, StarletteHTTPException):
        message = err.detail if isinstance(err.detail, str) else json.dumps(err.detail)
        if err.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif err.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        # Keep the exception's headers: a 405 must say which methods are allowed (Allow).
        return error_response(err.status_code, message, getattr(err, "headers", None))
    if isinstance(err, RequestValidationError):
        return error_response(400, f"invalid request: {err.errors()[:1]}")
    return error_response(500, f"internal error: {type(err).__name__}")


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error through ``response_for``."""
    async def handler(request: Request, err: Exception) -> JSONResponse:
        return response_for(err, request)

    for kind in (NtmError, StarletteHTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, handler)


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


T = TypeVar("T")

# Bodies of at least this many bytes are decoded on a worker thread. The strict decoder takes
# about a tenth of a second per MiB (orjson, when it may decode, less; but any body may go the
# strict way): on the event loop a multi-megabyte body would hold every other request,
# health checks included, until it was done. Smaller bodies decode faster than a thread hop.
OFF_LOOP_BYTES = 256 * 1024


async def decode_body(body: bytes, decode: Callable[[bytes], T]) -> T:
    """``decode(body)``: on the event loop for a small body, on a worker thread from
    ``OFF_LOOP_BYTES`` on, so that a large one does not stall the other requests while it
    parses (its errors are raised here either way)."""
    if len(body) < OFF_LOOP_BYTES:
        return decode(body)
    return await run_in_threadpool(decode, body)


async def counted(plane: DataPlane, name: str, protocol: str, request: Request,
                  work: Callable[[], Awaitable[Response]]) -> Response:
    """Run an inference handler's ``work`` with its request counted in the metrics (in
    flight, answered by status, latency); an NtmError becomes its response here, so that its
    status is the one counted. Anything else goes on to the app's handler (logged, 500)."""
    with plane.counting(name, protocol) as answered:
        try:
            response = await work()
        except NtmError as err:
            response = response_for(err, request)
        answered.status = response.status_code
        return response
