"""Which rules carry a model trained with N0 memory rows to N > N0 rows: measured, not guessed.

    python benchmarks/memory_rules.py                  # the bundled copy and recall models
    python benchmarks/memory_rules.py --small          # a tiny fresh model (for the tests)

Two rules (``ntm.model.cell``; ``ModelConfig.grow_*``) are varied over one model's weights:
- ``grow_logit_margin``: the added rows' initial weighting logits are each head's minimum
  learned logit minus this (0: "pad with the minimum"; 30: the added rows start with ~no weight);
- ``grow_strength_power``: the content key strength is multiplied by (log N / log N0)^power
  (0: no scaling).
Each variant is evaluated (``ntm.training.evaluation.evaluate``, TensorFlow) on the same fresh sequences
at each point, with the memory rows ``ntm evaluate`` gives the point. The bundled models are
rebuilt from their ONNX files with ``ntm.export.recover`` (weights matched within 1e-5).
Writes ``benchmarks/results/memory_rules.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_io import write_results  # noqa: E402

MARGINS = (0.0, 30.0)
POWERS = (0.0, 1.0, 2.0, 3.0)
POINTS = {"copy": "120,200,500,1000", "recall": "30,40,60,100"}


def variants(margins, powers) -> list[dict]:
    return [{"grow_logit_margin": m, "grow_strength_power": p} for m in margins for p in powers]


def measure(run_dir: Path, points: str, sequences: int, rules: list[dict]) -> tuple[str, list]:
    """Evaluate the run's model under each rule variant -> (task name, result rows)."""
    from ntm.cli.evaluate import eval_points
    from ntm.training.evaluation import evaluate, rows_for_points
    from ntm.training.runs import Run
    from ntm.training.steps import make_predict_with_rows

    run = Run.load(run_dir)
    model, config, task = run.model, run.model_config, run.task
    difficulties = eval_points(points, task)
    rows_for = rows_for_points(task, config.memory_size)
    out = []
    for rule in rules:
        varied = dataclasses.replace(config, **rule)
        model.config = model.cell.config = varied  # the weights stay; only the rules change
        predict = make_predict_with_rows(model)  # traced anew under the varied rules
        start = time.perf_counter()
        for row in evaluate(predict, task, difficulties, sequences, rows_for=rows_for):
            out.append({**rule, **row.as_dict()})
        print(f"{task.name} {rule}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return task.name, out


def markdown(results: dict) -> str:
    lines = ["# Memory that grows: rules for rows beyond the trained ones", "",
             f"`{results['command']}`; {results['sequences']} fresh sequences per point, the same "
             f"for every variant; rows as `ntm evaluate` gives them. Cells: mean bits/seq "
             f"(perfect sequences).", ""]
    for model, section in results["models"].items():
        rows = section["rows"]
        points = list(dict.fromkeys((r["length"], r["memory_size"]) for r in rows))
        lines += [f"## {model} (trained rows {section['trained_rows']})", "",
                  "| logit margin | strength power | "
                  + " | ".join(f"{section['length_name']} {n} ({m} rows)" for n, m in points)
                  + " |", "| --- | --- | " + " | ".join("---" for _ in points) + " |"]
        for rule in results["variants"]:
            cells = []
            for n, m in points:
                r = next(r for r in rows if r["length"] == n and r["memory_size"] == m
                         and all(r[k] == v for k, v in rule.items()))
                cells.append(f"{r['mean_bits']:.2f} ({100 * r['perfect_fraction']:.0f}%)")
            lines.append(f"| {rule['grow_logit_margin']:g} | {rule['grow_strength_power']:g} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def small_run(root: Path) -> Path:
    """A tiny copy model (16 rows, lengths 1-4), trained for a few steps."""
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    run_dir = root / "copy"
    tc = TrainConfig(task="copy", max_length=4, steps=20, eval_every=10, eval_size=8,
                     checkpoint_every=10, log_every=10, target_error=-1)
    Trainer(Run.create(run_dir, tc, memory_size=16, memory_width=6, controller_size=16)).run()
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="copy,recall",
                        help="Bundled model names, comma-separated.")
    parser.add_argument("--sequences", "-n", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--small", action="store_true", help="A tiny fresh model, 2 variants.")
    args = parser.parse_args()

    from ntm.cli.common import quiet_tensorflow

    quiet_tensorflow(1)
    from ntm.export.recover import recover
    from ntm.training.config import load_configs
    from ntm.serving.models import bundled_models

    rules = variants((0.0, 30.0), (0.0, 2.0)) if args.small else variants(MARGINS, POWERS)
    results = {"benchmark": "memory_rules",
               "command": "python benchmarks/memory_rules.py" + (" --small" if args.small else ""),
               "sequences": 4 if args.small else args.sequences, "variants": rules, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.small:
            runs = {"tiny-copy": (small_run(Path(tmp)), "8,20")}
        else:
            runs = {}
            for name in args.models.split(","):
                run_dir = Path(tmp) / name
                recover(bundled_models()[name], run_dir)
                runs[name] = (run_dir, POINTS[name])
        for name, (run_dir, points) in runs.items():
            task_name, rows = measure(run_dir, points, results["sequences"], rules)
            trained = load_configs(run_dir)[0].memory_size
            results["models"][name] = {
                "task": task_name, "trained_rows": trained,
                "length_name": "items" if task_name == "recall" else "length", "rows": rows}
    write_results(args.out, "memory_rules", args.small, results, markdown(results))


if __name__ == "__main__":
    main()
