"""Errors that know their HTTP status, without importing a web framework.

Every one is an ``NtmError``: the command line shows its message once (exit code 1), the HTTP
server answers it as ``{"error": message}`` with ``status`` (``ntm.serving.app.error_response``).
"""

from __future__ import annotations

from http import HTTPStatus

from ntm.contract.errors import NtmError


class ServingError(NtmError):
    """A request or model problem; ``status`` is what an HTTP server answers."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, status: HTTPStatus | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ServingError):
    status = HTTPStatus.BAD_REQUEST


class NotFound(ServingError):
    status = HTTPStatus.NOT_FOUND


class TooLarge(ServingError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unprocessable(ServingError):
    """Well-formed but over a limit (sequence too long, batch too large)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class ModelLoadError(ServingError):
    """A model file is missing, not ONNX, or lacks ntm metadata (raised at start-up)."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR


class InferenceFailed(ServingError):
    """onnxruntime failed on a valid request: a server-side fault for that request only."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR
