"""Benchmark table: several training runs' learning curves side by side, step for step.

Two runs that differ in one setting (same task, seed and data) are compared by what their
trainers measured at the same steps: each run's held-out bits/seq (``eval_bits_per_seq`` in
its ``metrics.jsonl``, every ``eval_every`` steps on the trainer's fixed held-out set) and its
training cross-entropy in bits per sequence (the logged loss / ln 2), averaged over spans of
``--span`` steps, up to the last step every run has reached (or ``--until``). Single
evaluations jump by a few bits from one to the next; a span's mean is what the table compares.
It writes ``results/NAME.{json,md}``.

    python benchmarks/heldout_curves.py --name priority_sort_initial_memory --span 2000 \\
        constant=runs/ps-memory-seed2-constant learned=runs/ps-memory-seed2-learned
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.results_io import write_results  # noqa: E402


def read_metrics(run_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    """({step: held-out bits/seq}, {step: training loss in nats}) from RUN_DIR/metrics.jsonl; a
    later line for the same step wins (a resumed run writes its steps again); a line cut short
    by a kill is skipped."""
    heldout, loss = {}, {}
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run_dir}: no metrics.jsonl (not a training run)")
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "eval_bits_per_seq" in record:
            heldout[record["step"]] = record["eval_bits_per_seq"]
        if "loss" in record:
            loss[record["step"]] = record["loss"]
    return heldout, loss


def span_means(values: dict[int, float], span: int, until: int, scale: float = 1.0,
               since: int = 0) -> list[float | None]:
    """The mean of ``values`` in each span (since, since + span], ... up to ``until``, times
    ``scale``; None for a span with none."""
    out = []
    for start in range(since, until, span):
        inside = [v for s, v in values.items() if start < s <= start + span]
        out.append(statistics.fmean(inside) * scale if inside else None)
    return out


def compare(runs: dict[str, Path], span: int, until: int | None, since: int = 0) -> dict:
    metrics = {label: read_metrics(path) for label, path in runs.items()}
    reached = min(max(heldout, default=0) for heldout, _ in metrics.values())
    last = min(until, reached) if until else reached
    if last - since < span:
        raise SystemExit(f"the runs share only steps {since}-{reached}, less than one "
                         f"--span {span}")
    last -= (last - since) % span
    return {
        "span": span, "since": since, "until": last,
        "runs": {label: {"run": str(path),
                         "heldout_bits": span_means(metrics[label][0], span, last, since=since),
                         "training_bits": span_means(metrics[label][1], span, last,
                                                     1 / math.log(2), since=since)}
                 for label, path in runs.items()},
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown(result: dict, command: str) -> str:
    labels = list(result["runs"])
    span = result["span"]
    lines = [f"# Learning curves side by side: {', '.join(labels)}", "",
             f"`{command}`", "",
             f"Mean over each span of {span:,} steps of the trainer's held-out bits/seq "
             f"(`eval_bits_per_seq`) and of its training cross-entropy in bits/seq (loss / ln 2)."
             f" Runs: " + "; ".join(f"{label}: `{r['run']}`" for label, r in
                                    result["runs"].items()) + ".", "",
             "| steps | " + " | ".join(f"{label} held-out" for label in labels) + " | "
             + " | ".join(f"{label} cross-entropy" for label in labels) + " |",
             "| --- |" + " --- |" * (2 * len(labels))]
    for i, start in enumerate(range(result["since"], result["until"], span)):
        cells = [_cell(result["runs"][label]["heldout_bits"][i]) for label in labels]
        cells += [_cell(result["runs"][label]["training_bits"][i]) for label in labels]
        lines.append(f"| {start + 1:,}-{start + span:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def labelled_run(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=RUN_DIR, got {text!r}")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=labelled_run, metavar="LABEL=RUN_DIR")
    parser.add_argument("--name", required=True, help="results/NAME.{json,md}")
    parser.add_argument("--span", type=int, default=2000, help="steps per row [2000]")
    parser.add_argument("--until", type=int, default=None,
                        help="last step [the last step every run has reached]")
    parser.add_argument("--since", type=int, default=0,
                        help="the step the first span starts after, e.g. where a resumed "
                             "run began [0]")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.span < 1:
        parser.error("--span must be at least 1")
    runs = dict(args.runs)
    if len(runs) != len(args.runs):
        parser.error("each LABEL once")
    if args.since < 0:
        parser.error("--since must be at least 0")
    result = compare(runs, args.span, args.until, args.since)
    command = "python benchmarks/heldout_curves.py " + " ".join(
        [f"--name {args.name}", f"--span {args.span}"]
        + ([f"--until {args.until}"] if args.until else [])
        + ([f"--since {args.since}"] if args.since else [])
        + [shlex.quote(f"{label}={path}") for label, path in runs.items()])  # as typed
    write_results(args.out, args.name, False, result, markdown(result, command))


if __name__ == "__main__":
    main()
