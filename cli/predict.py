"""``ntm predict``: answer task requests with an exported model, locally (no TensorFlow).

The requests go the one way every surface takes (``ntm.serving.plane``, through the library's
``ntm.load``): the same answers as ``ntm serve`` gives, without HTTP.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ntm.cli.common import config_options, config_values
from ntm.serving.settings import RuntimeOptions


@click.command(short_help="Answer requests from a JSON file with an ONNX model.")
@click.argument("input_file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option("--model", "-m", "model", default=None,
              help="Model NAME or PATH [default: chosen from the request: copy, repeat-copy "
                   "or recall; your export under exports/ first, else the bundled one].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON answer here instead of standard output.")
@click.option("--pretty", is_flag=True, help="Draw inputs and answers as bit rows.")
@config_options(RuntimeOptions, only=("intra_op_threads", "memory_size", "max_memory_size",
                                      "engine"))
@click.pass_context
def predict(ctx: click.Context, input_file: str, model: str | None, output: Path | None,
            pretty: bool, **_) -> None:
    """Run the requests in INPUT_FILE ('-' for standard input) through a model.

    INPUT_FILE holds one request, a list of requests, JSON lines, or {"instances": [...]}:
    the same JSON as the HTTP API. The answer is {"predictions": [...]}; each prediction says
    whether its request lay within the model's training range ("within_training_range") and
    with how many memory rows it ran ("memory_size").
    """
    # A bad request or model raises an NtmError naming it: the ntm group shows it (exit 1).
    loaded, instances, answers = answer(read_input(input_file), model,
                                        **config_values(ctx, RuntimeOptions))
    if pretty:
        text_out = render_all(loaded, instances, answers)
    else:
        text_out = json.dumps({"predictions": answers}) + "\n"
    if output is None:
        click.echo(text_out, nl=False)
        return
    write_whole(output, text_out)
    click.echo(f"wrote {len(answers)} prediction(s) to {output}", err=True)


def read_input(input_file: str) -> bytes:
    """The bytes of INPUT_FILE or standard input (parse_text checks the encoding and names a
    bad byte)."""
    try:
        return sys.stdin.buffer.read() if input_file == "-" else Path(input_file).read_bytes()
    except OSError as err:
        raise click.ClickException(f"cannot read {input_file}: {err}") from None


def answer(data: bytes, model: str | None, **options):
    """(the model, its requests, their answers) for the text of an input file."""
    import ntm
    from ntm.contract.tasks import guess_task, task_classes
    from ntm.serving.requests import parse_instances, parse_text

    payload = parse_text(data)
    instances = parse_instances(payload)
    spec = model or guess_task(payload)
    if spec is None:
        raise click.ClickException(
            "cannot tell the task from the request (expected the fields of a task: "
            + "; ".join(f"{name}: {'+'.join(cls.request_keys)}"
                        for name, cls in task_classes().items() if cls.request_keys)
            + "); pass --model NAME|PATH")
    loaded = ntm.load(spec, **options)
    return loaded, instances, loaded.predict(instances)


def render_all(loaded, instances: list, answers: list[dict]) -> str:
    """Every request and its answer drawn as bit rows (``--pretty``)."""
    from ntm.serving.render import render

    blocks = [f"request {i} ({loaded.name}, model {loaded.path})\n"
              + render(loaded.task, request, result, loaded.task.training_range())
              for i, (request, result) in enumerate(zip(instances, answers))]
    return "\n\n".join(blocks) + "\n"


def write_whole(output: Path, text: str) -> None:
    """Write ``text`` to ``output`` whole or not at all (``ntm.files``)."""
    from ntm.files import write_text_atomic

    try:
        write_text_atomic(output, text)
    except OSError as err:
        raise click.ClickException(f"cannot write {output}: {err}") from None
