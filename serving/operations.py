"""Operations: ``GET /metrics`` (Prometheus) for the process that answers.

Health checks are the V2 protocol's own (``/v2/health/live``, ``/v2/health/ready``, in
``ntm.serving.v2``): Triton, KServe and tritonclient probe those paths.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from ntm.serving.http import errors
from ntm.serving.plane import DataPlane


def router(plane: DataPlane) -> APIRouter:
    """The operations routes over ``plane``."""
    api = APIRouter()

    @api.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
             responses=errors(401))
    async def metrics():
        return Response(plane.metrics.render(), media_type=plane.metrics.content_type)

    return api
