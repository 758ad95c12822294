"""The server process: models loaded, the socket bound, uvicorn run in one process or several
(``workers``), the gRPC port checked, every stage said in one line on stderr; SIGTERM drains.

``ntm serve`` parses its flags and calls ``serve``; everything about the process is here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
from typing import Callable

from ntm.serving.errors import ServingError
from ntm.serving.settings import RuntimeOptions, ServerSettings

SPEC_VARIABLE = "NTM_SERVE_SPEC"  # what a worker process rebuilds the app from


class CannotServe(ServingError):
    """The server cannot start: a port, the models or an extra; the message says which."""


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def serve(models: tuple[str, ...], host: str, port: int, options: RuntimeOptions,
          settings: ServerSettings, workers: int = 1, echo: Callable[[str], None] = say) -> None:
    """Serve ``models`` (``--model`` specs; none: the defaults) on ``host``:``port`` until SIGTERM
    or SIGINT, which drain in-flight requests; ``workers`` processes share the port."""
    runtimes = load_runtimes(models, options)
    if workers > 1:  # a sequence's requests must all reach the process holding it
        settings = dataclasses.replace(settings, max_sequences=0)
    settings = dataclasses.replace(settings, grpc_host=host)
    sock = listening_socket(host, port)
    if settings.grpc_port:
        check_grpc(host, settings.grpc_port, sock.getsockname()[1])
    for r in runtimes:
        echo(model_line(r))
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{sock.getsockname()[1]}"
    if settings.grpc_port:
        echo(f"gRPC (V2, inference.GRPCInferenceService) on {shown}:{settings.grpc_port}")
    config = dict(log_level="warning", timeout_graceful_shutdown=settings.graceful_timeout_s,
                  access_log=False, lifespan="on")
    if workers == 1:
        run_one_process(runtimes, settings, sock, address, config, echo)
    else:
        run_workers(runtimes, options, settings, sock, address, workers, config, echo)
    echo("stopped: in-flight requests drained")


def model_line(runtime) -> str:
    """What the start-up says of a served model: its task, mode, memory rows (or that it has
    no memory), engine and file."""
    info = runtime.describe()
    memory = f"memory rows {info['memory_sizes']}" if runtime.parts.memory else \
        f"{runtime.parts.network}, no memory"
    return (f"model {runtime.name}: {runtime.task.name}, {info['mode']}, {memory}, "
            f"{runtime.engine} engine, {runtime.path}")


def load_runtimes(models: tuple[str, ...], options: RuntimeOptions) -> list:
    """The models ``--model`` names (default: bundled, replaced by your exports), loaded.
    CannotServe when there is none or two share a name; a model that cannot be found or
    loaded raises an NtmError naming the file."""
    from ntm.serving.models import default_models, parse_model_option, resolve
    from ntm.serving.runtime import ModelRuntime

    if models:
        entries = [(name, resolve(spec)) for name, spec in map(parse_model_option, models)]
    else:
        entries = list(default_models().items())
        if not entries:
            raise CannotServe("no models to serve: none bundled and none under exports/; pass "
                              "--model PATH")
    runtimes = [ModelRuntime(path, name=name, options=options) for name, path in entries]
    names = [r.name for r in runtimes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        error = CannotServe(f"two models are named {duplicates[0]!r}; name them with --model "
                            f"NAME=PATH")
        error.exit_code = 2
        raise error
    return runtimes


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening; CannotServe naming the address."""
    try:
        # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
        # connections whose socket says so; without it every response waited for the client's
        # delayed ACK.
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listen before saying so: connections made from now on wait in the backlog until
        # the app has started, instead of being refused.
        sock.listen(2048)
    except OSError as err:
        raise CannotServe(f"cannot bind {host}:{port}: {err.strerror}") from None
    return sock


def check_grpc(host: str, port: int, http_port: int) -> None:
    """CannotServe, before anything starts, when gRPC cannot be served: the [grpc] extra is
    missing, or the port is the HTTP one or taken."""
    try:
        import grpc  # noqa: F401
        import tritonclient.grpc.service_pb2_grpc  # noqa: F401
    except ImportError:
        raise CannotServe("--grpc-port needs the grpc extra: pip install -e '.[grpc]'") from None
    if port == http_port:
        error = CannotServe(f"--grpc-port {port} is the HTTP port; choose another")
        error.exit_code = 2
        raise error
    listening_socket(host, port).close()


def run_one_process(runtimes: list, settings: ServerSettings, sock: socket.socket,
                    address: str, config: dict, echo: Callable[[str], None]) -> None:
    """Serve in this process until SIGTERM or SIGINT, which drain in-flight requests."""
    import uvicorn

    from ntm.serving.app import create_app
    from ntm.serving.plane import DataPlane

    app = create_app(DataPlane(runtimes, settings))
    echo(f"listening on {address} (open it in a browser to try the models)")
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal to the
    # handler that was there before it; a no-op one lets the process end with exit code 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(uvicorn.Config(app, **config)).run(sockets=[sock])


def run_workers(runtimes: list, options: RuntimeOptions, settings: ServerSettings,
                sock: socket.socket, address: str, workers: int, config: dict,
                echo: Callable[[str], None]) -> None:
    """Serve from ``workers`` processes on one socket; SIGTERM: every worker drains, then
    ends."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # Each worker is a fresh (spawned) process that rebuilds the app from this spec; the
    # models were loaded once here only to fail fast with a clear message.
    os.environ[SPEC_VARIABLE] = json.dumps(serving_spec(runtimes, options, settings))
    uv_config = uvicorn.Config(f"{__name__}:app_from_spec", factory=True, workers=workers,
                               **config)
    echo(f"listening on {address} with {workers} worker processes")
    Multiprocess(uv_config, sockets=[sock]).run()


def serving_spec(runtimes, options: RuntimeOptions, settings: ServerSettings) -> dict:
    """What a worker process needs to rebuild the app: models, runtime options, settings."""
    return {"models": [[r.name, str(r.path)] for r in runtimes],
            "runtime": dataclasses.asdict(options), "settings": dataclasses.asdict(settings)}


def app_from_spec():
    """uvicorn factory run in each worker process: the app described by NTM_SERVE_SPEC."""
    from ntm.serving.app import create_app
    from ntm.serving.plane import DataPlane
    from ntm.serving.runtime import ModelRuntime

    spec = json.loads(os.environ[SPEC_VARIABLE])
    options = RuntimeOptions(**spec["runtime"])
    runtimes = [ModelRuntime(path, name=name, options=options) for name, path in spec["models"]]
    return create_app(DataPlane(runtimes, ServerSettings(**spec["settings"])))
