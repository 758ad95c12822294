"""Make a bundled pretrained model: export a run into ``ntm/pretrained/`` with its model card.

    python -m ntm.export.bundle RUN_DIR --train-command "ntm train --task copy ..."
    python -m ntm.export.bundle RUN_DIR --reexport --note "why"   # same weights, new export
    python -m ntm.export.bundle --fused-twins     # NAME.fused.onnx beside every bundled model
    python -m ntm.export.bundle --fused-twins ngrams   # beside the named ones only

The card (``NAME.json`` and ``NAME.md``) records the exact commands, seed, steps, sequences
seen, training wall time, the export proof and the ``ntm evaluate`` table (100+ fresh sequences
per point), checked against the quality bars below. Maintainers run this; the package ships
its output.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

PRETRAINED = Path(__file__).resolve().parent.parent / "ntm" / "pretrained"

def bundle(run_dir: Path, train_command: str, sequences: int = 100,
           out_dir: Path = PRETRAINED, note: str = "", checkpoint: int | None = None) -> dict:
    """Export the run's latest checkpoint (or the one of step ``checkpoint``) with its card."""
    from ntm.export.exporter import export_run
    from ntm.files import write_json_atomic, write_text_atomic
    from ntm.training.runs import Run

    run = Run.load(run_dir, checkpoint)
    task, model_config, train_config, state = run.task, run.model_config, run.train_config, \
        run.state
    name = task.name
    target = out_dir / f"{name}.onnx"
    result = export_run(run, "onnx", out=target, stateful=True)
    points = list(task.default_eval_points())
    bars_of_task = task.quality_bars()  # {Difficulty: most bits/seq}: the task's own bars
    points += [point for point in bars_of_task if point not in points]
    rows = run.evaluate(points, sequences)
    table = [r.as_dict() for r in rows]
    bars = []
    for point, limit in bars_of_task.items():
        row = next(r for r in rows if r.length == point.length and r.repeats == point.repeats)
        bars.append({"point": point.label(), "limit": limit,
                     "measured": row.mean_bits, "met": row.mean_bits <= limit})
    card = {
        "name": name,
        "task": name,
        "file": target.name,
        "size_bytes": target.stat().st_size,
        "train_command": train_command,
        "export_command": export_command(run_dir, name, checkpoint),
        "seed": train_config.seed,
        "steps": int(state.step.numpy()),
        "batch_size": train_config.batch_size,
        "sequences_seen": int(state.sequences.numpy()),
        "train_wall_seconds": round(float(state.elapsed.numpy()), 1),
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}, no GPU",
        "train_lengths": list(task.train_lengths),
        "train_repeats": list(task.train_repeats) if task.train_repeats else None,
        "model": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "export_max_abs_diff": result.max_diff,
        "export_proof": [c.as_dict() for c in result.comparisons],
        "note": note,
        "evaluate_command": f"ntm evaluate {run_dir}{checkpoint_flag(checkpoint)} -n {sequences}",
        "evaluation": table,
        "quality_bars": bars,
        "all_bars_met": all(b["met"] for b in bars),
    }
    write_json_atomic(out_dir / f"{name}.json", card, trailing_newline=True)
    write_text_atomic(out_dir / f"{name}.md", render_card(card, task))
    return card


def checkpoint_flag(checkpoint: int | None) -> str:
    return "" if checkpoint is None else f" --checkpoint {checkpoint}"


def export_command(run_dir: Path, name: str, checkpoint: int | None = None) -> str:
    return (f"ntm export {run_dir}{checkpoint_flag(checkpoint)} --format onnx --stateful "
            f"-o ntm/pretrained/{name}.onnx")


def reexport(run_dir: Path, note: str, out_dir: Path = PRETRAINED,
             checkpoint: int | None = None) -> dict:
    """Export the run of a bundled model again (same weights: its evaluation, made with
    TensorFlow, stands) and update its card's export fields, appending ``note``."""
    import json

    from ntm.contract.tasks import get_task
    from ntm.export.exporter import export_run
    from ntm.files import write_json_atomic, write_text_atomic
    from ntm.training.runs import Run

    run = Run.load(run_dir, checkpoint)
    name = run.task.name
    card = json.loads((out_dir / f"{name}.json").read_text())
    target = out_dir / f"{name}.onnx"
    result = export_run(run, "onnx", out=target, stateful=True)
    card.update(size_bytes=target.stat().st_size,
                export_command=export_command(run_dir, name, checkpoint),
                export_max_abs_diff=result.max_diff,
                export_proof=[c.as_dict() for c in result.comparisons],
                note=f"{card.get('note', '')} {note}".strip())
    write_json_atomic(out_dir / f"{name}.json", card, trailing_newline=True)
    write_text_atomic(out_dir / f"{name}.md", render_card(card, get_task(name)))
    return card


# The fused twins' op refuses more rows than this (a bad memory_size gets an error, not an
# allocation); far above what ntm serve's --max-memory-size gives by default.
TWIN_MAX_MEMORY_SIZE = 16384


def fused_twins(out_dir: Path = PRETRAINED, names: list[str] | None = None) -> list[Path]:
    """``NAME.fused.onnx`` for every bundled ``NAME.onnx`` (or those ``names``): its weights
    read back from the ONNX file (``ntm.export.recover``), exported with ``--kernel fused
    --stateful`` and proven against TensorFlow like any export; the card records the twin's
    proof."""
    import json
    import tempfile

    from ntm.export.exporter import export_run
    from ntm.export.recover import recover
    from ntm.files import write_json_atomic

    models = sorted(p for p in out_dir.glob("*.onnx") if not p.name.endswith(".fused.onnx"))
    unknown = sorted(set(names or ()) - {p.stem for p in models})
    if unknown:
        raise SystemExit(f"--fused-twins: no bundled model {', '.join(unknown)} in {out_dir}")
    written = []
    for model in models:
        name = model.stem
        if names and name not in names:
            continue
        target = out_dir / f"{name}.fused.onnx"
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            recover(model, run)
            result = export_run(run, "onnx", out=target, stateful=True, kernel="fused",
                                max_memory_size=TWIN_MAX_MEMORY_SIZE)
        card_path = out_dir / f"{name}.json"
        if card_path.is_file():
            card = json.loads(card_path.read_text())
            card["fused_twin"] = {
                "file": target.name, "size_bytes": target.stat().st_size,
                "command": "python -m ntm.export.bundle --fused-twins",
                "export_max_abs_diff": result.max_diff}
            write_json_atomic(card_path, card, trailing_newline=True)
        written.append(target)
    return written


FAILURE_FIELDS = ("failures", "failure_rate", "failure_upper_95")


def evaluation_table(evaluation: list[dict], length_name: str) -> str:
    """The card's generalisation table: ``format_table``'s columns, then, for rows measured
    with failure rates (``benchmarks/card_evaluation.py``), the sequences with any wrong bit,
    their share and its 95% upper bound."""
    from ntm.training.evaluation import EvalRow, format_table

    rows = [EvalRow(**{k: v for k, v in r.items() if k not in FAILURE_FIELDS})
            for r in evaluation]
    lines = format_table(rows, length_name).split("\n")
    if not all("failures" in r for r in evaluation):
        return "\n".join(lines)
    lines[0] += f" {'failed':>7} {'rate':>8} {'95% upper':>10}"
    for i, r in enumerate(evaluation, start=1):
        lines[i] += (f" {r['failures']:>7} {100 * r['failure_rate']:>7.3f}%"
                     f" {100 * r['failure_upper_95']:>9.3f}%")
    return "\n".join(lines)


def evaluation_method(card: dict) -> str:
    """How the generalisation table was measured, when the card says (card_evaluation.py)."""
    method = card.get("evaluation_method")
    if not method:
        return ""
    failures = (f" `failed`: sequences with any wrong bit; `rate`: their share; `95% upper`: "
                f"its {method['failure_bound']}." if all("failures" in r for r in card["evaluation"])
                else "")
    return (f"{method['sequences_per_point']} fresh sequences per point (data seed "
            f"{method['data_seed']}: the sequences `ntm evaluate --seed {method['data_seed']}` "
            f"draws), run by onnxruntime {method['onnxruntime']} on the {method['engine']} "
            f"engine (`{method['file']}`), memory rows as `ntm.load(...).predict` chooses them "
            f"(`rows`); {method['seconds'] / 60:.1f} minutes in all.{failures}\n")


def heads(count: int, kind: str) -> str:
    return f"{count} {kind} head" + ("" if count == 1 else "s")


def memory_sentence(card: dict, task) -> str:
    from ntm.export.verify import growth_point

    rows = card["model"]["memory_size"]
    if growth_point(task, rows) is None:  # no request needs more rows (a count-keeping task)
        return (f"Its memory keeps the {rows} rows it was trained with, however long the "
                f"request: what the task needs to store does not grow with it.")
    power = card["model"].get("grow_strength_power", 2)
    strength = ("the key strength as trained (the task's rule: no sharpening on more rows)"
                if power == 0 else f"the key strength scaled by\n(log N / log {rows})^{power:g}")
    return (f"Its memory grows with the\nrequest: trained with {rows} rows, it runs with\n"
            f"the smallest of {rows} x 1, 2, 4, ... rows that holds the request (the\n"
            f"`rows` column below), {strength}.")


def bars_section(card: dict, task) -> str:
    """The quality-bar table, or why the task has none (N-grams: its cost is the measure)."""
    if not card["quality_bars"]:
        if not task.exact_answers:
            return ("None: the bits it predicts are random, so wrong bits measure nothing; its "
                    "measure is its cost in bits against the optimal Bayesian estimator's on "
                    "the same sequences (`cost_bits`, `optimal_bits`, `excess_bits` above; "
                    "the paper's comparison in docs/paper.md).")
        return "None for this task."
    with_rates = all("failure_rate" in b for b in card["quality_bars"])
    bars = "\n".join(f"| {b['point']} | <= {b['limit']} | {b['measured']:.3f} | "
                     + (f"{100 * b['failure_rate']:.3f}% (<= {100 * b['failure_upper_95']:.3f}%) | "
                        if with_rates else "")
                     + f"{'yes' if b['met'] else 'NO'} |" for b in card["quality_bars"])
    head = ("| point | bar (bits/seq) | measured | failure rate (95% upper) | met |\n"
            "| --- | --- | --- | --- | --- |" if with_rates else
            "| point | bar (bits/seq) | measured | met |\n| --- | --- | --- | --- |")
    return f"{head}\n{bars}"


def render_card(card: dict, task) -> str:
    """The card's Markdown for ``task`` (a ``Task``: its names for lengths, whether its
    memory grows, whether wrong bits are failures)."""
    from ntm.contract.tasks.task import span

    proof = "\n".join(f"| {c['point']} | {c['time_steps']} | {c['max_abs_diff']:.1e} | "
                      f"{c['noise_floor']:.1e} | {c['tolerance']:.1e} |"
                      for c in card.get("export_proof", []))
    repeats = f", repeats {span(card['train_repeats'])}" if card["train_repeats"] else ""
    model = card["model"]
    learned = " learned at start" if model.get("initial_memory") == "learned" else ""
    return f"""# Model card: {card['name']}

A Neural Turing Machine (memory {model['memory_size']} x {model['memory_width']}{learned},
{model['controller']} controller of {model['controller_size']} units,
{heads(model['num_read_heads'], 'read')} / {heads(model['num_write_heads'], 'write')}) trained on
the `{card['task']}` task, {task.length_name} {span(card['train_lengths'])}{repeats}.
Dynamic-length ONNX ({card['size_bytes'] / 1024:.0f} KB), proven equal to TensorFlow at export
(largest difference {card['export_max_abs_diff']:.1e}; every point within its tolerance below).
A stateful export: one sequence may run in several requests, its memory kept between them
(`ntm serve` with `sequence_id`; Triton's sequence batcher). {memory_sentence(card, task)}
{card.get('note') or ''}

## How it was made
```
{card['train_command']}
{card['export_command']}
```
Seed {card['seed']}; {card['steps']} steps at batch {card['batch_size']} =
{card['sequences_seen']} sequences; {card['train_wall_seconds'] / 60:.1f} minutes of training on
{card['machine']} (wall time of the training steps, measured by `ntm train`).

## Generalisation (`{card['evaluate_command']}`)
{evaluation_method(card)}```
{evaluation_table(card['evaluation'], task.length_name)}
```

## Quality bars
{bars_section(card, task)}

## Export proof (fresh inputs, batch 8; tolerance = max(1e-4, 4 x TensorFlow's noise floor))
| point | time steps | max abs diff | noise floor | tolerance |
| --- | --- | --- | --- | --- |
{proof}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--fused-twins", nargs="*", metavar="NAME", default=None,
                        help="Write NAME.fused.onnx beside every bundled model, or the named "
                             "ones (the ntm_ops kernel must be built: ntm build-kernel).")
    parser.add_argument("--train-command",
                        help="The exact ntm train command that made the run (not with "
                             "--reexport, which keeps the card's).")
    parser.add_argument("--sequences", type=int, default=100)
    parser.add_argument("--note", default="", help="A disclosure for the card (e.g. seed choice).")
    parser.add_argument("--checkpoint", type=int, default=None,
                        help="The step whose checkpoint to bundle [default: the latest].")
    parser.add_argument("--reexport", action="store_true",
                        help="Only export the run again and update the card's export fields "
                             "(same weights), appending --note.")
    args = parser.parse_args()
    if args.fused_twins is not None:
        for path in fused_twins(names=args.fused_twins):
            print(f"wrote {path}")
        return
    if args.run_dir is None:
        parser.error("RUN_DIR is required (unless --fused-twins)")
    if not args.reexport and not args.train_command:
        parser.error("--train-command is required (unless --reexport)")
    if args.reexport:
        card = reexport(args.run_dir, args.note, checkpoint=args.checkpoint)
    else:
        card = bundle(args.run_dir, args.train_command, args.sequences, note=args.note,
                      checkpoint=args.checkpoint)
    from ntm.contract.tasks import get_task

    print(render_card(card, get_task(card["task"])))


if __name__ == "__main__":
    main()
