"""``ntm export``: SavedModel, ONNX or Triton repository, proven equal to TensorFlow."""

from __future__ import annotations

from pathlib import Path

import click

from ntm.cli.common import WordOrCount, checkpoint_option, quiet_tensorflow


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@click.command(short_help="Export a run to SavedModel, ONNX or a Triton repository.")
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "onnx", "triton"]),
              default="onnx", show_default=True, help="What to write.")
@click.option("--length", default="dynamic", show_default=True,
              type=WordOrCount("dynamic", "time steps",
                               "a fixed length must be >= 1 (empty input is never valid)"),
              help="'dynamic' (any length, one ONNX Loop) or N time steps (unrolled, no Loop; "
                   "a copy of L vectors takes 2L+1 steps).")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True,
              help="ONNX opset.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Output file (onnx), directory (savedmodel) or repository (triton) "
                   "[default: under exports/TASK/].")
@click.option("--name", default=None, help="Model name in a Triton repository [default: task].")
@click.option("--memory-size", type=click.IntRange(min=1), default=None,
              help="Memory rows of a fixed-length export [default: the smallest of the trained "
                   "rows x 1, 2, 4, ... that holds the longest input of --length]. A dynamic "
                   "export takes its rows per call (input 'memory_size').")
@click.option("--stateful", is_flag=True, default=False,
              help="Also take and return the state a sequence has reached (inputs "
                   "'sequence_start' and 'state', output 'state_out'), so one sequence can run "
                   "in several requests: ntm serve's sequence_id, Triton's sequence batcher "
                   "with implicit state. Dynamic length only; proven run in 3 pieces.")
@click.option("--max-memory-size", type=click.IntRange(min=1), default=None,
              help="Most memory rows a model gives an input when it chooses the rows itself "
                   "(memory_size 0, and every Triton model); a longer input fails "
                   "[default: 2048].")
@click.option("--instances", type=click.IntRange(min=1), default=2, show_default=True,
              help="Triton: model instances (runs at once), one onnxruntime thread each.")
@click.option("--sequence-idle-s", type=click.FloatRange(min=0.001), default=300.0,
              show_default=True,
              help="Triton, --stateful: a sequence idle this long is ended (as ntm serve's).")
@click.option("--max-sequences", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Triton, --stateful: live sequences at once (one sequence-batcher slot "
                   "each).")
@click.option("--kernel", type=click.Choice(["standard", "fused"]), default="standard",
              show_default=True,
              help="standard: ONNX operators only, runs on any onnxruntime (the portable "
                   "artifact); fused: one node of the ntm_ops library (`ntm build-kernel`), "
                   "several times faster, needs the library where it runs (onnx, triton; "
                   "dynamic length).")
@checkpoint_option
def export(run_dir: Path | None, fmt: str, length: int | None, opset: int, out: Path | None,
           name: str | None, memory_size: int | None, stateful: bool,
           max_memory_size: int | None,
           instances: int, sequence_idle_s: float, max_sequences: int, kernel: str,
           checkpoint: int | None) -> None:
    """Export the run in RUN_DIR [default: the latest run under runs/].

    After writing, the export is loaded back and compared with the TensorFlow model on fresh
    task inputs, inside and beyond the training lengths (and, for a dynamic export, with twice
    the trained memory rows); a difference above 1e-4 fails the export and leaves any earlier
    export in place. A run of the LSTM baseline exports the same way, without memory: no
    memory_size input, no attention output [default name: TASK-lstm].
    """
    if kernel == "fused" and (fmt == "savedmodel" or length is not None):
        raise click.UsageError(
            "--kernel fused is an ONNX model (--format onnx or triton)" if fmt == "savedmodel"
            else "--kernel fused exports have a dynamic length (drop --length): the kernel has "
                 "no Loop to unroll")
    quiet_tensorflow(1)  # first: without the train extra, the one-line error that says so
    from ntm.training.runs import Run, latest_run

    run_dir = run_dir or latest_run()
    run = Run.load(run_dir, checkpoint)
    from ntm.contract.metadata import ModelParts
    from ntm.export.exporter import ExportError, check_options_apply, export_run
    from ntm.export.triton import TritonSettings

    try:
        check_options_apply(ModelParts.of(run.model_config.to_dict()), memory_size,
                            max_memory_size, kernel)
    except ExportError as err:
        raise click.UsageError(str(err)) from None

    settings = TritonSettings(instances=instances, max_sequences=max_sequences,
                              sequence_idle_us=round(sequence_idle_s * 1e6))
    result = export_run(run, fmt, length, opset, out, name, memory_size, stateful,
                        max_memory_size, settings, kernel)
    click.echo(f"exported {run_dir} as {result.format} ({result.mode}"
               + (", stateful" if stateful else "") + (", fused kernel" if kernel == "fused" else "")
               + (f", {length} time steps" if length else "") + f") to {result.path}")
    for path, size in result.files:
        click.echo(f"  {path}  {human_size(size)}")
    for c in result.comparisons:
        attention = ("no attention output" if c.attention_diff is None
                     else f"attention {c.attention_diff:.2e}")
        click.echo(f"  matches TensorFlow at {c.label} ({c.time_steps} steps, batch {c.batch}): "
                   f"max |diff| {c.probabilities_diff:.2e} ({attention}; "
                   f"TensorFlow's noise floor {c.noise_floor:.1e}, tolerance "
                   f"{c.tolerance:.1e})")
    click.echo(f"max |diff| {result.max_diff:.2e}: verified")
