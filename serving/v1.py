"""The task API in TensorFlow Serving's REST envelope: thin handlers over the data plane.

- ``POST /v1/models/{name}:predict`` ``{"instances": [...]}`` (or one request, or a list) ->
  ``{"predictions": [...]}``
- ``GET /v1/models/{name}``, ``GET /v1/models/{name}/metadata``, ``GET /v1/models``
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ntm.serving import jsondoc
from ntm.serving.http import (INFER_ERRORS, READ_ERRORS, AnswerResponse, counted,
                               decode_body, errors, read_body)
from ntm.serving.plane import DataPlane
from ntm.serving.requests import PredictBody, parse_instances
from ntm.serving.schema import request_body
from ntm.serving.v2codec import VERSION, model_metadata


class Predictions(BaseModel):
    """One answer per request, in order: the task's fields, within_training_range and
    memory_size (and attention when asked for)."""

    predictions: list[dict[str, Any]]


def router(plane: DataPlane) -> APIRouter:
    """The v1 routes over ``plane``."""
    api = APIRouter()

    @api.get("/v1/models", summary="List served models", responses=errors(401))
    async def v1_list():
        return {"models": [r.describe() for r in plane.runtimes.values()]}

    @api.post("/v1/models/{name}:predict", summary="Task API (TensorFlow Serving envelope)",
              responses={200: {"model": Predictions}, **INFER_ERRORS},
              openapi_extra=request_body(PredictBody))
    async def v1_predict(name: str, request: Request):
        return await predict(plane, name, request)

    @api.get("/v1/models/{name}", summary="Model status (TensorFlow Serving)",
             responses={**READ_ERRORS, **errors(405)})
    async def v1_status(name: str):
        if name.endswith(":predict") and name not in plane.runtimes:  # GET .../copy:predict
            raise HTTPException(405, headers={"Allow": "POST"})  # the route, not a model name
        plane.get(name)
        return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    @api.get("/v1/models/{name}/metadata", summary="Model metadata (TensorFlow Serving)",
             responses=READ_ERRORS)
    async def v1_metadata(name: str):
        runtime = plane.get(name)
        return {"model_spec": {"name": name, "signature_name": "serving_default",
                               "version": VERSION},
                "metadata": {"ntm": runtime.metadata, "summary": runtime.describe(),
                             "signature_def": model_metadata(runtime)}}

    return api


async def predict(plane: DataPlane, name: str, request: Request) -> Response:
    """``POST /v1/models/{name}:predict``, counted in the metrics (also answered by
    ``ntm.serving.hotpaths`` without FastAPI's routing)."""
    async def work():
        plane.get(name)
        body = await read_body(request, plane.settings.max_body_bytes)
        instances = await decode_body(body, lambda data: parse_instances(
            jsondoc.loads(data, "request"), plane.settings.max_instances))
        return AnswerResponse({"predictions": await plane.predict(name, instances)})
    return await counted(plane, name, "v1", request, work)
