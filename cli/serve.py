"""``ntm serve``: an onnxruntime server (no TensorFlow) for the task and V2 APIs, HTTP and
gRPC. The flags are parsed here; the server process is ``ntm.serving.server``'s."""

from __future__ import annotations

import click

from ntm.cli.common import config_options, config_values
# Light (no onnxruntime, no web framework): the options come from the settings' fields.
from ntm.serving.settings import RuntimeOptions, ServerSettings

RUNTIME_OPTIONS = ("max_time_steps", "memory_size", "max_memory_size", "large_batch_threads",
                   "large_batch_from", "engine")


@click.command(short_help="Serve models over HTTP and gRPC (TF Serving REST + KServe V2).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback by default; 0.0.0.0 exposes the server).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (0: any free port, printed at start-up).")
@click.option("--model", "-m", "models", multiple=True,
              help="NAME=PATH, NAME or PATH; repeatable [default: the bundled models, or your "
                   "exports under exports/ of the same name].")
@config_options(ServerSettings)
@config_options(RuntimeOptions, only=RUNTIME_OPTIONS)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the port (each loads the models and batches on "
                   "its own; /metrics reports the process that answers).")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, models: tuple[str, ...], workers: int,
          **_) -> None:
    """Serve NTM models with onnxruntime over HTTP (and gRPC with --grpc-port).

    Task API: POST /v1/models/NAME:predict with {"instances": [...]}. Raw tensors: the Open
    Inference Protocol under /v2 (tritonclient works). Metrics at /metrics.
    """
    from ntm.serving.server import serve as run

    settings = config_values(ctx, ServerSettings)
    settings["api_key"] = settings.get("api_key") or None
    run(models, host, port, RuntimeOptions(**config_values(ctx, RuntimeOptions)),
        ServerSettings(**settings), workers,
        echo=lambda line: click.echo(line, err=True))
