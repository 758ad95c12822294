"""Access: the API key check, the access log (one line per request), and the ``x-request-id``
that ties a line to a call, for HTTP and gRPC alike.

Text (the default) for people, JSON lines for machines (``ntm serve --access-log json``), or
off. A line says method, path, model, status, milliseconds and request id; the id is the
client's ``x-request-id`` header when it sends one (echoed back), else one made here (returned
in the same header). gRPC calls are logged the same way, with their method as path.
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import re
import sys
import time
from typing import TextIO

ACCESS_LOG_FORMATS = ("text", "json", "off")
REQUEST_ID = "x-request-id"
_MODEL_IN_PATH = re.compile(r"^/v[12]/models/([^/:]+)")
_VALID_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces: safe to echo


KEY_HINT = "send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"


def key_matches(key: bytes, x_api_key: bytes | str | None, authorization: bytes | str | None
                ) -> bool:
    """Whether a request carries ``key``: as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``
    (HTTP headers or gRPC metadata), compared in constant time."""
    def raw(value) -> bytes:
        return value.encode("latin-1") if isinstance(value, str) else (value or b"")

    supplied, auth = raw(x_api_key), raw(authorization)
    if not supplied and auth.lower().startswith(b"bearer "):
        supplied = auth[7:]
    return hmac.compare_digest(supplied, key)


class AccessLog:
    """Writes one line per request in ``fmt`` (``ACCESS_LOG_FORMATS``) to ``stream``."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None):
        if fmt not in ACCESS_LOG_FORMATS:
            raise ValueError(f"access log format must be one of {ACCESS_LOG_FORMATS}")
        self.fmt = fmt
        self.stream = stream or sys.stderr

    def write(self, method: str, path: str, status: int, seconds: float, request_id: str,
              model: str | None = None) -> None:
        if self.fmt == "off":
            return
        ms = round(seconds * 1000, 2)
        if model is None:
            match = _MODEL_IN_PATH.match(path)
            model = match.group(1) if match else None
        if self.fmt == "json":
            line = json.dumps({"method": method, "path": path, "model": model, "status": status,
                               "ms": ms, "request_id": request_id})
        else:
            line = f'{method} {path} {status} {ms}ms model={model or "-"} id={request_id}'
        self.stream.write(line + "\n")
        self.stream.flush()


def request_id(supplied: bytes | str | None) -> str:
    """The client's id when it is a sane one, else a new one."""
    if isinstance(supplied, bytes):
        supplied = supplied.decode("latin-1")
    if supplied and _VALID_ID.match(supplied):
        return supplied
    return new_id()


_ids: dict = {"pid": None}


def new_id() -> str:
    """A request id unique to this server: a random prefix per process, then a counter (a
    uuid4 per request cost the event loop a system call for its randomness)."""
    pid = os.getpid()
    if _ids["pid"] != pid:  # a new process (a worker forked after import): a prefix of its own
        _ids.update(pid=pid, prefix=os.urandom(8).hex(), count=itertools.count())
    return f"{_ids['prefix']}{next(_ids['count']):016x}"  # 32 hex digits, as a uuid's


class AccessLogMiddleware:
    """ASGI middleware (outermost): gives every HTTP request its id, returns it in the
    ``x-request-id`` response header, and logs the request when its response has gone."""

    def __init__(self, app, log: AccessLog):
        self.app = app
        self.log = log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(dict(scope["headers"]).get(REQUEST_ID.encode()))
        status = [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": headers + [(b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.log.fmt != "off":  # nothing to build for a log that writes nothing
                path = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}"
                                        if scope.get("query_string") else "")
                self.log.write(scope["method"], path, status[0], time.perf_counter() - start,
                               rid)
