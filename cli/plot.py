"""``ntm plot``: PNG figures of attention, training curves and generalisation (matplotlib).

The commands read files, run models and check input; ``ntm.cli.figures`` draws. attention and the
model/JSON sources of generalisation use onnxruntime only; a run directory needs TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

import click

from ntm.cli.common import NtmGroup

PLOT_EXTRA = "pip install -e '.[plot]'"
TRAIN_EXTRA = "pip install -e '.[train]'"


@click.group(cls=NtmGroup,
             short_help="Draw attention, training curves or generalisation as PNG.")
def plot() -> None:
    """Draw figures as PNG files (needs matplotlib: pip install -e '.[plot]')."""


def figure_options(width: float, height: float) -> Callable:
    """-o/--output, --dpi, --width, --height, with this figure's default size in inches."""
    def decorate(command: Callable) -> Callable:
        options = [
            click.option("-o", "--output", required=True,
                         type=click.Path(dir_okay=False, path_type=Path),
                         help="PNG file to write (parent directories are created)."),
            click.option("--dpi", type=click.IntRange(min=10, max=1200), default=100,
                         show_default=True, help="Pixels per inch."),
            click.option("--width", type=click.FloatRange(min=1, max=100), default=width,
                         show_default=True, help="Figure width in inches."),
            click.option("--height", type=click.FloatRange(min=1, max=100), default=height,
                         show_default=True, help="Figure height in inches."),
        ]
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def require_matplotlib() -> None:
    """A one-line error naming the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException(f"plotting needs matplotlib: {PLOT_EXTRA}") from None


def write_figure(figure: Any, output: Path, dpi: int) -> None:
    """Save atomically and say where, with the size in pixels."""
    from ntm.cli.figures import save_png

    try:
        width, height = save_png(figure, output, dpi)
    except OSError as err:
        raise click.ClickException(f"cannot write {output}: {err.strerror or err}") from None
    click.echo(f"wrote {output} ({width}x{height} px)")


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; ClickException naming the file when unreadable or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise click.ClickException(f"cannot read {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise click.ClickException(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); "
                                   f"expected {what}") from None


# -- attention -------------------------------------------------------------------------------
class Run(NamedTuple):
    """One request's run, whoever computed it.

    inputs [T, in], probabilities [T, out], read [T, R, N], write [T, W, N]; answer_start is
    the first scored step; source names the model or server for the title.
    """

    task: Any
    encoded: Any
    probabilities: Any
    read: Any
    write: Any
    source: str


@plot.command(short_help="Inputs, outputs, write and read weightings of one request.")
@click.option("--model", "-m", "model", default=None,
              help="Model NAME or PATH [default: chosen from the request, as ntm predict does]. "
                   "With --url: the model's name on the server.")
@click.option("--input", "-i", "input_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Request JSON, as ntm predict reads it.")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which request of the file to draw.")
@click.option("--url", default=None,
              help="Ask a running server (ntm serve, e.g. http://127.0.0.1:8080) instead of "
                   "running the model here: the request goes with return_attention and the "
                   "picture is drawn from its answer (outputs shown for the answer steps).")
@click.option("--api-key", envvar="NTM_API_KEY", default=None,
              help="The server's API key, with --url (also read from NTM_API_KEY).")
@figure_options(width=8.0, height=9.0)
def attention(model: str | None, input_file: Path, index: int, url: str | None,
              api_key: str | None, output: Path, dpi: int, width: float, height: float) -> None:
    """Draw one request's run like Figure 6 of the NTM paper: input bits, output
    probabilities, and the write and read weightings over memory locations against time
    (memory cropped to the locations the heads use)."""
    require_matplotlib()
    from ntm.cli.figures import attention_figure
    from ntm.serving.errors import ServingError
    from ntm.contract.tasks import guess_task
    from ntm.serving.requests import parse_instances, parse_text

    try:  # bytes: parse_text checks the encoding and names a bad byte
        data = input_file.read_bytes()
    except OSError as err:
        raise click.ClickException(f"cannot read {input_file}: {err}") from None
    try:
        payload = parse_text(data)
        instances = parse_instances(payload)
    except ServingError as err:
        raise click.ClickException(f"{input_file}: {err.message}") from None
    if index >= len(instances):
        raise click.BadParameter(f"{input_file} holds {len(instances)} request(s)",
                                 param_hint="--index")
    spec = model or guess_task(payload)
    if spec is None:
        raise click.ClickException(f"cannot tell the task from {input_file}; pass "
                                   f"--model NAME|PATH")
    request = instances[index]
    run = (run_on_server(url, spec, request, api_key, input_file) if url
           else run_here(spec, request, input_file))
    task, encoded = run.task, run.encoded
    figure = attention_figure(
        encoded.inputs, run.probabilities, run.read, run.write,
        title=f"{task.name}, {task.length_name} {encoded.difficulty.label()} "
              f"({run.source}, request {index})",
        answer_start=encoded.output_steps.start, width=width, height=height, dpi=dpi)
    write_figure(figure, output, dpi)


def run_here(spec: str, request: Any, input_file: Path) -> Run:
    """Run the request through the model NAME|PATH with onnxruntime in this process."""
    from ntm.serving.errors import ServingError
    from ntm.serving.models import resolve
    from ntm.serving.codec import encode_request
    from ntm.serving.runtime import ModelRuntime

    try:
        runtime = ModelRuntime(resolve(spec))
        encoded = encode_request(runtime, request)
    except ServingError as err:
        raise click.ClickException(f"{input_file}: {err.message}") from None
    if not runtime.parts.attention:
        raise click.ClickException(no_attention(f"model {runtime.path}"))
    try:
        probabilities, weights = runtime.run(encoded.inputs[None])
    except ServingError as err:
        raise click.ClickException(f"{input_file}: {err.message}") from None
    reads = runtime.model_config["num_read_heads"]
    return Run(runtime.task, encoded, probabilities[0], weights[0, :, :reads],
               weights[0, :, reads:], f"model {runtime.path.name}")


def run_on_server(url: str, name: str, request: Any, api_key: str | None,
                  input_file: Path) -> Run:
    """POST the request to URL/v1/models/NAME:predict with return_attention; rebuild the run
    from the answer (the task encodes the inputs here, with NumPy only)."""
    import numpy as np

    from ntm.contract.tasks import InvalidRequest, get_task

    try:
        task = get_task(name)
    except ValueError as err:
        raise click.ClickException(f"--model {name}: with --url it must be a task name "
                                   f"served there ({err})") from None
    try:
        encoded = task.encode(request)
    except InvalidRequest as err:
        raise click.ClickException(f"{input_file}: {err.field}: {err.message}") from None
    body = {"instances": [{**request, "return_attention": True}]}
    answer = post_json(f"{url.rstrip('/')}/v1/models/{name}:predict", body, api_key)
    try:
        prediction = answer["predictions"][0]
        if "attention" not in prediction:
            raise click.ClickException(no_attention(f"{url}'s model {name}"))
        read = np.stack([np.asarray(h, np.float32) for h in prediction["attention"]["read"]], 1)
        write = np.stack([np.asarray(h, np.float32) for h in prediction["attention"]["write"]],
                         1)
        if np.asarray(prediction["probabilities"]).ndim != 2 or read.ndim != 3 or write.ndim != 3:
            raise ValueError("probabilities or attention have the wrong shape")
        probabilities = task.answer_probabilities(prediction, encoded)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise click.ClickException(f"{url}: unexpected answer ({type(err).__name__}: {err})") \
            from None
    return Run(task, encoded, probabilities, read, write, f"server {url}")


def no_attention(model: str) -> str:
    """The error for a model that has no attention to draw."""
    return (f"{model} answers no attention: it has no memory (the LSTM baseline); there is "
            f"nothing to draw")


def post_json(url: str, body: dict, api_key: str | None) -> dict:
    """POST JSON, return the JSON answer; a one-line ClickException for any failure."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", "")
        except (ValueError, AttributeError):
            message = err.reason
        raise click.ClickException(f"{url} answered {err.code}: {message}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise click.ClickException(f"cannot reach {url}: {reason}") from None
    except ValueError:
        raise click.ClickException(f"{url}: the answer is not JSON") from None


# -- training curves -------------------------------------------------------------------------
@plot.command(short_help="Training curves against sequences seen; several runs overlaid.")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--label", "labels", multiple=True,
              help="Legend label of a RUN_DIR, once per RUN_DIR in order [default: NAME (TASK) "
                   "from its config.json].")
@click.option("--smooth", type=click.IntRange(min=1), default=20, show_default=True,
              help="Running-median window over logged training points (1 = raw).")
@click.option("--scale", type=click.Choice(["log", "linear"]), default="log", show_default=True,
              help="The y axis: log (symmetric-log when a value is 0), or linear as the "
                   "paper draws its learning curves.")
@figure_options(width=8.0, height=6.0)
def curves(run_dirs: tuple[Path, ...], labels: tuple[str, ...], smooth: int, scale: str,
           output: Path, dpi: int, width: float, height: float) -> None:
    """Draw training loss and bits/seq against sequences seen, with the held-out
    evaluations, from RUN_DIR/metrics.jsonl (or a metrics.jsonl file given directly).

    Several RUN_DIRs are overlaid on one axis, one colour each (e.g. the NTM and the LSTM
    baseline on one task): each run's held-out bits/seq, its training bits/seq (running
    median) faint behind.
    """
    require_matplotlib()
    from ntm.cli.figures import Curve, curves_figure, overlay_figure, running_median
    from ntm.training.layout import METRICS_FILE

    if labels and len(labels) != len(run_dirs):
        raise click.BadParameter(f"{len(labels)} label(s) for {len(run_dirs)} RUN_DIR(s): give "
                                 f"one per RUN_DIR, or none", param_hint="--label")
    runs = []
    for run_dir in run_dirs:
        path = run_dir / METRICS_FILE if run_dir.is_dir() else run_dir
        if not path.is_file():
            raise click.ClickException(f"{run_dir} has no {METRICS_FILE}: not a training run "
                                       f"directory, or nothing logged yet")
        runs.append((path, *read_metrics(path)))
    if len(runs) == 1:
        path, train, evaluation = runs[0]
        figure = curves_figure(train, evaluation, smooth=smooth,
                               title=labels[0] if labels else run_title(path.parent),
                               log_y=scale == "log", width=width, height=height, dpi=dpi)
    else:
        lines = []
        for i, (path, train, evaluation) in enumerate(runs):
            label = labels[i] if labels else run_title(path.parent)
            median = (train["sequences"], running_median(train["bits_per_seq"], smooth))
            if len(evaluation["sequences"]):
                lines.append(Curve(f"{label}, held-out", evaluation["sequences"],
                                   evaluation["bits_per_seq"], median, "o-"))
            else:
                lines.append(Curve(f"{label}, training", *median))
        figure = overlay_figure(lines, log_y=scale == "log",
                                title=f"bits/seq of {len(runs)} runs (training faint, running "
                                      f"median of {smooth})", width=width, height=height,
                                dpi=dpi)
    write_figure(figure, output, dpi)


def read_metrics(path: Path) -> tuple[dict, dict]:
    """metrics.jsonl -> (training {"sequences", "loss", "bits_per_seq", "stage"} [P] arrays,
    evaluation {"sequences", "bits_per_seq"} [E] arrays); ClickException naming file and line."""
    import numpy as np

    train: dict[str, list] = {"sequences": [], "loss": [], "bits_per_seq": [], "stage": []}
    evaluation: dict[str, list] = {"sequences": [], "bits_per_seq": []}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise click.ClickException(f"cannot read {path}: {err}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if "eval_bits_per_seq" in entry:
                evaluation["sequences"].append(float(entry["sequences"]))
                evaluation["bits_per_seq"].append(float(entry["eval_bits_per_seq"]))
            elif "loss" in entry:
                for key in ("sequences", "loss", "bits_per_seq"):
                    train[key].append(float(entry[key]))
                train["stage"].append(int(entry.get("stage", 1)))
        except json.JSONDecodeError as err:
            raise click.ClickException(f"{path} line {number}: not valid JSON ({err.msg})") \
                from None
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise click.ClickException(f"{path} line {number}: not a metrics entry ({err!r})") \
                from None
    if not train["sequences"] and not evaluation["sequences"]:
        raise click.ClickException(f"{path} holds no training or evaluation metrics")
    return ({k: np.asarray(v) for k, v in train.items()},
            {k: np.asarray(v) for k, v in evaluation.items()})


def run_title(run_dir: Path) -> str:
    """'NAME (TASK)' from the run's config.json, or the directory name alone."""
    from ntm.contract.fields import ConfigError
    from ntm.training.config import load_configs

    try:
        return f"{run_dir.name} ({load_configs(run_dir)[1].task})"
    except ConfigError:
        return run_dir.name


# -- generalisation --------------------------------------------------------------------------
class Table(NamedTuple):
    """A generalisation table ready to draw."""

    task: Any  # ntm.contract.tasks.Task: names and the training range
    rows: list[dict]  # EvalRow.as_dict() rows
    title: str
    range_note: str = ""  # said next to the shaded training range


@plot.command(short_help="Bits/seq against length, the training range shaded.")
@click.argument("source")
@click.option("--points", default=None,
              help="Comma-separated lengths (recall: item counts; repeat-copy: LENGTHxREPEATS) "
                   "[default: the task's table]; not for a JSON table.")
@click.option("--sequences", "-n", type=click.IntRange(min=1), default=100, show_default=True,
              help="Fresh sequences per point.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Data seed.")
@figure_options(width=7.0, height=4.5)
def generalisation(source: str, points: str | None, sequences: int, seed: int, output: Path,
                   dpi: int, width: float, height: float) -> None:
    """Draw bits/seq against length from SOURCE: a JSON table written by
    'ntm evaluate --json', a model NAME or .onnx PATH (evaluated with onnxruntime), or a
    training run directory (evaluated with TensorFlow: needs the training extra)."""
    require_matplotlib()
    from ntm.training.config import CONFIG_FILE
    from ntm.cli.figures import generalisation_figure

    path = Path(source)
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        table = table_from_run(path, points, sequences, seed)
    elif path.is_file() and path.suffix != ".onnx":
        if points:
            raise click.BadParameter("a JSON table has its own points", param_hint="--points")
        table = table_from_json(path)
    else:
        table = table_from_model(source, points, sequences, seed)
    figure = generalisation_figure(
        table.rows, table.task.name, table.task.length_name, table.task.train_lengths,
        table.task.train_repeats, range_note=table.range_note, title=table.title, width=width,
        height=height, dpi=dpi)
    write_figure(figure, output, dpi)


def table_from_model(spec: str, points: str | None, sequences: int, seed: int) -> Table:
    """Evaluate an ONNX model (NAME or PATH) with onnxruntime and print the table."""
    from ntm.cli.evaluate import eval_points
    from ntm.training.evaluation import evaluate, format_table
    from ntm.serving.errors import NotFound
    from ntm.serving.models import resolve
    from ntm.serving.runtime import ModelRuntime

    try:
        path = resolve(spec)
    except NotFound as err:
        raise click.ClickException(f"{err.message} (SOURCE may also be an 'ntm evaluate --json' "
                                   f"table or a run directory)") from None
    runtime = ModelRuntime(path)
    task = runtime.task
    difficulties = eval_points(points, task)
    rows = evaluate(lambda x, n: runtime.run(x, n)[0], task, difficulties, sequences,
                    seed=seed, rows_for=lambda d: runtime.memory_size_for(
                        task.memory_rows(d), f"{task.length_name} {d.label()}"))
    click.echo(format_table(rows, task.length_name))
    return Table(task, [r.as_dict() for r in rows],
                 f"{task.name}: generalisation of model {runtime.path.name}")


def table_from_run(run_dir: Path, points: str | None, sequences: int, seed: int) -> Table:
    """Evaluate a training run's latest checkpoint with TensorFlow, as ``ntm evaluate`` does."""
    from ntm.cli.common import quiet_tensorflow
    from ntm.cli.evaluate import evaluate_run
    from ntm.training.evaluation import format_table

    try:
        quiet_tensorflow(1)
    except ImportError:
        raise click.ClickException(f"{run_dir} is a training run: evaluating it needs the "
                                   f"training extra: {TRAIN_EXTRA}") from None
    task, state, rows = evaluate_run(run_dir, points, sequences, seed=seed)
    click.echo(format_table(rows, task.length_name))
    return Table(task, [r.as_dict() for r in rows],
                 f"{task.name}: generalisation of run {run_dir.name} "
                 f"(step {int(state.step.numpy())})")


def table_from_json(path: Path) -> Table:
    """A table written by ``ntm evaluate --json``; its training range is the JSON's
    "train_lengths"/"train_repeats" when present, else the task's default (said in the legend)."""
    from ntm.contract.tasks import get_task

    data = read_json(path, "a table written by 'ntm evaluate --json'")
    if not isinstance(data, dict) or "task" not in data or "rows" not in data:
        raise click.ClickException(f"{path}: expected a JSON object with 'task' and 'rows', as "
                                   f"'ntm evaluate --json' writes")
    ranges = {key: tuple(data[key]) for key in ("train_lengths", "train_repeats")
              if isinstance(data.get(key), list) and len(data[key]) == 2}
    try:
        task = get_task(data["task"], **ranges)
    except (ValueError, TypeError) as err:
        raise click.ClickException(f"{path}: {err}") from None
    rows = [check_row(row, f"{path}: rows[{i}]") for i, row in enumerate(data["rows"])] \
        if isinstance(data["rows"], list) else []
    if not rows:
        raise click.ClickException(f"{path}: 'rows' must be a non-empty list")
    where = f" at step {data['step']}" if "step" in data else ""
    return Table(task, rows, f"{task.name}: generalisation of "
                             f"{data.get('run_dir', path.name)}{where}",
                 "" if "train_lengths" in ranges else "task default")


def check_row(row: Any, where: str) -> dict:
    """One table row: numeric length, mean_bits, worst_bits (repeats optional)."""
    numbers = ("length", "mean_bits", "worst_bits")
    if not isinstance(row, dict) or not all(
            isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
            for k in numbers):
        raise click.ClickException(f"{where}: expected numbers {', '.join(numbers)}")
    return row
