"""``ntm serve``: an onnxruntime HTTP server (no TensorFlow) for the task and V2 APIs."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket

import click

# Light (no onnxruntime, no web framework): the options' defaults are the settings' own.
from ntm.serving.settings import RuntimeOptions, ServerSettings

SERVER = ServerSettings()
RUNTIME = RuntimeOptions()


@click.command(short_help="Serve models over HTTP (TF Serving REST + KServe V2).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback by default; 0.0.0.0 exposes the server).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (0: any free port, printed at start-up).")
@click.option("--model", "-m", "models", multiple=True,
              help="NAME=PATH, NAME or PATH; repeatable [default: the bundled models, or your "
                   "exports under exports/ of the same name].")
@click.option("--max-batch-size", type=click.IntRange(1, 4096), default=SERVER.max_batch_size,
              show_default=True, help="Most sequences merged into one run (and per request).")
@click.option("--max-queue-delay-ms", type=click.FloatRange(0, 1000),
              default=SERVER.max_queue_delay_ms, show_default=True,
              help="How long a batch waits for more requests.")
@click.option("--no-batching", is_flag=True, help="Run every request alone.")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), default=SERVER.max_body_bytes,
              show_default=True, help="Larger request bodies get 413.")
@click.option("--max-time-steps", type=click.IntRange(min=1), default=RUNTIME.max_time_steps,
              show_default=True, help="Longest sequence a dynamic-length model accepts.")
@click.option("--memory-size", type=click.IntRange(min=1), default=RUNTIME.memory_size,
              help="Memory rows for every request [default: per request, the smallest of the "
                   "trained rows x 1, 2, 4, ... that holds it].")
@click.option("--max-memory-size", type=click.IntRange(min=1), default=RUNTIME.max_memory_size,
              show_default=True,
              help="Most memory rows a request may get; one that needs more is answered 422.")
@click.option("--api-key", envvar="NTM_API_KEY", default=SERVER.api_key,
              help="Require this key (Authorization: Bearer KEY, or X-API-Key) on every "
                   "endpoint but health. Also read from NTM_API_KEY.")
@click.option("--inference-threads", type=click.IntRange(1, 64),
              default=SERVER.inference_threads, show_default=True,
              help="Threads running onnxruntime; also how many merged batches of a model run "
                   "at once (a second only when the waiting requests fill it).")
@click.option("--large-batch-threads", type=click.IntRange(1, 64),
              default=RUNTIME.large_batch_threads, show_default=True,
              help="Intra-op threads for a merged batch of at least --large-batch-from "
                   "sequences, taken only while they are idle among --inference-threads "
                   "(1: every run on one thread). Measured on 2 cores with 2: one client's "
                   "64-sequence requests 1.12-1.20x faster, 32 clients of one sequence "
                   "0.97-1.07x (the extra thread spins and takes CPU from the other runs).")
@click.option("--large-batch-from", type=click.IntRange(min=1),
              default=RUNTIME.large_batch_from, show_default=True,
              help="The smallest merged batch that gets --large-batch-threads.")
@click.option("--max-sequences", type=click.IntRange(min=0), default=SERVER.max_sequences,
              show_default=True,
              help="Most live sequences (requests with sequence_id on a model exported with "
                   "--stateful) kept at once; one more is answered 429. 0: no sequences.")
@click.option("--sequence-idle-s", type=click.FloatRange(min=0, min_open=True),
              default=SERVER.sequence_idle_s, show_default=True,
              help="Drop a sequence idle this many seconds (its state lives in memory only).")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=SERVER.grpc_port,
              show_default=True,
              help="Also serve the V2 protocol over gRPC (KServe's / Triton's "
                   "inference.GRPCInferenceService) on this port, same host; 0: off, as it "
                   "needs the [grpc] extra and a second port nobody asked for (Triton's is 8001).")
@click.option("--access-log", type=click.Choice(["text", "json", "off"]),
              default=SERVER.access_log, show_default=True,
              help="One line per request on stderr (method, path, model, status, ms, request "
                   "id): for people, as JSON lines for machines, or none.")
@click.option("--graceful-timeout", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds SIGTERM waits for in-flight requests.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the port (each loads the models and batches on "
                   "its own; /metrics reports the process that answers).")
def serve(host: str, port: int, models: tuple[str, ...], max_batch_size: int,
          max_queue_delay_ms: float, no_batching: bool, max_body_bytes: int,
          max_time_steps: int, memory_size: int | None, max_memory_size: int,
          api_key: str | None, inference_threads: int, large_batch_threads: int,
          large_batch_from: int, max_sequences: int,
          sequence_idle_s: float, grpc_port: int, access_log: str, graceful_timeout: float,
          workers: int) -> None:
    """Serve NTM models with onnxruntime over HTTP.

    Task API: POST /v1/models/NAME:predict with {"instances": [...]}. Raw tensors: the Open
    Inference Protocol under /v2 (tritonclient works). Metrics at /metrics.
    """
    options = RuntimeOptions(max_time_steps=max_time_steps, memory_size=memory_size,
                             max_memory_size=max_memory_size,
                             large_batch_threads=large_batch_threads,
                             large_batch_from=large_batch_from)
    runtimes = load_runtimes(models, options)
    settings = ServerSettings(max_body_bytes=max_body_bytes, max_batch_size=max_batch_size,
                              max_queue_delay_ms=max_queue_delay_ms, batching=not no_batching,
                              api_key=api_key or None, inference_threads=inference_threads,
                              # a sequence's requests must all reach the process holding it
                              max_sequences=max_sequences if workers == 1 else 0,
                              sequence_idle_s=sequence_idle_s, grpc_port=grpc_port,
                              grpc_host=host, graceful_timeout_s=graceful_timeout,
                              access_log=access_log)
    sock = listening_socket(host, port)
    if grpc_port:
        check_grpc(host, grpc_port, port_of(sock))
    for r in runtimes:
        click.echo(f"model {r.name}: {r.task.name}, {r.describe()['mode']}, memory rows "
                   f"{r.describe()['memory_sizes']}, {r.path}", err=True)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port_of(sock)}"
    if grpc_port:
        click.echo(f"gRPC (V2, inference.GRPCInferenceService) on {shown}:{grpc_port}", err=True)
    config_args = dict(log_level="warning", timeout_graceful_shutdown=graceful_timeout,
                       access_log=False, lifespan="on")
    if workers == 1:
        run_one_process(runtimes, settings, sock, address, config_args)
    else:
        run_workers(runtimes, options, settings, sock, address, workers, config_args)
    click.echo("stopped: in-flight requests drained", err=True)


def load_runtimes(models: tuple[str, ...], options: RuntimeOptions) -> list:
    """The models ``--model`` names (default: bundled, replaced by your exports), loaded;
    a usage error when two share a name. A model that cannot be found or loaded raises an
    NtmError naming the file: the ntm group shows it as one line."""
    from ntm.serving.models import default_models, parse_model_option, resolve
    from ntm.serving.runtime import ModelRuntime

    if models:
        entries = [(name, resolve(spec)) for name, spec in map(parse_model_option, models)]
    else:
        entries = list(default_models().items())
        if not entries:
            raise click.ClickException("no models to serve: none bundled and none under "
                                       "exports/; pass --model PATH")
    runtimes = [ModelRuntime(path, name=name, options=options) for name, path in entries]
    names = [r.name for r in runtimes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise click.UsageError(f"two models are named {duplicates[0]!r}; name them with "
                               f"--model NAME=PATH")
    return runtimes


def run_one_process(runtimes: list, settings: ServerSettings, sock: socket.socket,
                    address: str, config_args: dict) -> None:
    """Serve in this process until SIGTERM or SIGINT, which drain in-flight requests."""
    import uvicorn

    from ntm.serving.app import create_app
    from ntm.serving.plane import DataPlane

    app = create_app(DataPlane(runtimes, settings))
    click.echo(f"listening on {address} (open it in a browser to try the models)", err=True)
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal to the
    # handler that was there before it; a no-op one lets the process end with exit code 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(uvicorn.Config(app, **config_args)).run(sockets=[sock])


def run_workers(runtimes: list, options: RuntimeOptions, settings: ServerSettings,
                sock: socket.socket, address: str, workers: int, config_args: dict) -> None:
    """Serve from ``workers`` processes on one socket; SIGTERM: every worker drains, then
    ends."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # Each worker is a fresh (spawned) process that rebuilds the app from this spec; the
    # models were loaded once here only to fail fast with a clear message.
    os.environ[SPEC_VARIABLE] = json.dumps(serving_spec(runtimes, options, settings))
    config = uvicorn.Config(f"{__name__}:app_from_spec", factory=True, workers=workers,
                            **config_args)
    click.echo(f"listening on {address} with {workers} worker processes", err=True)
    Multiprocess(config, sockets=[sock]).run()


SPEC_VARIABLE = "NTM_SERVE_SPEC"


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening; one-line error when it cannot be."""
    try:
        # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
        # connections whose socket says so. Without it every response waited ~40 ms for the
        # client's delayed ACK (measured: 44 ms for a health check, 1 ms with it).
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listen before saying so: connections made from now on wait in the backlog until
        # the app has started, instead of being refused.
        sock.listen(2048)
    except OSError as err:
        raise click.ClickException(f"cannot bind {host}:{port}: {err.strerror}") from None
    return sock


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def check_grpc(host: str, port: int, http_port: int) -> None:
    """One line, before anything starts, when gRPC cannot be served: the [grpc] extra is
    missing, or the port is the HTTP one or taken."""
    try:
        import grpc  # noqa: F401
        import tritonclient.grpc.service_pb2_grpc  # noqa: F401
    except ImportError:
        raise click.ClickException("--grpc-port needs the grpc extra: pip install -e '.[grpc]'") \
            from None
    if port == http_port:
        raise click.UsageError(f"--grpc-port {port} is the HTTP port; choose another")
    listening_socket(host, port).close()


def serving_spec(runtimes, options, settings) -> dict:
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
