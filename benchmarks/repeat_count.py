"""Benchmark: where a repeat-copy model stops, beyond its training range.

For each (length, repeats) point it runs fresh sequences through a repeat-copy model (the
bundled one by default; onnxruntime only) and records bits/seq, the perfect fraction, and after
how many repeats of the sequence the end marker first fires (> 0.5). The question it answers:
does the model fail beyond its range because it loses its place in memory (errors inside the
repeats) or because it stops at the wrong time (an early or late end marker, the repeats
before it right)?

    python benchmarks/repeat_count.py                      # the bundled model
    python benchmarks/repeat_count.py --model exports/repeat-copy/repeat-copy.onnx
    python benchmarks/repeat_count.py --small              # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.results_io import write_results  # noqa: E402
from ntm.contract.tasks import Difficulty  # noqa: E402

# Inside the range, long sequences with few repeats, and the points the issue names (20x10...).
POINTS = ((10, 10), (20, 3), (20, 5), (30, 3), (40, 2), (12, 10), (14, 10), (20, 10), (10, 12),
          (10, 15), (10, 20))
SMALL_POINTS = ((2, 2), (4, 3))


def end_after(probabilities: np.ndarray, mask: np.ndarray, length: int, marker: int) -> float | None:
    """Repeats of the sequence written before the end marker first fires; None if never."""
    fired = probabilities[mask > 0, marker] > 0.5
    return float(np.argmax(fired)) / length if fired.any() else None


def measure(runtime, length: int, repeats: int, sequences: int, seed: int) -> dict:
    task = runtime.task
    rng = np.random.default_rng([seed, length, repeats])
    xs, ys, masks = zip(*[task.sequence(rng, Difficulty(length, repeats))
                          for _ in range(sequences)])
    probabilities, _ = runtime.run(np.stack(xs))
    bits, ends = [], Counter()
    for p, y, m in zip(probabilities, ys, masks):
        bits.append(int((((p > 0.5).astype(int) != y) * m[:, None]).sum()))
        after = end_after(p, m, length, task.bits)
        ends["never" if after is None else f"{after:g}"] += 1
    return {"length": length, "repeats": repeats, "sequences": sequences,
            "within_training_range": task.within_training_range(Difficulty(length, repeats)),
            "mean_bits": float(np.mean(bits)), "perfect_fraction": float(np.mean(np.equal(bits, 0))),
            "end_marker_after_repeats": dict(sorted(
                ends.items(), key=lambda kv: float("inf") if kv[0] == "never" else float(kv[0])))}


def markdown(result: dict) -> str:
    lines = ["# Repeat-copy: where the model stops", "",
             f"Model `{result['model']}`, {result['rows'][0]['sequences']} fresh sequences per "
             f"point (seeded). \"End marker after\": how many repeats of the sequence were "
             f"written when the end marker first fired (> 0.5), and in how many sequences.", "",
             "| length x repeats | in range | bits/seq | perfect | end marker after (repeats: sequences) |",
             "| --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        ends = ", ".join(f"{k}: {v}" for k, v in r["end_marker_after_repeats"].items())
        lines.append(f"| {r['length']}x{r['repeats']} | {'yes' if r['within_training_range'] else 'no'}"
                     f" | {r['mean_bits']:.1f} | {100 * r['perfect_fraction']:.0f}% | {ends} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="repeat-copy", help="NAME or PATH [repeat-copy]")
    parser.add_argument("--sequences", type=int, default=None, help="per point [50; small: 4]")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--small", action="store_true", help="two small points (tests)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    from ntm.serving.models import resolve
    from ntm.serving.runtime import ModelRuntime

    runtime = ModelRuntime(resolve(args.model))
    if runtime.task.train_repeats is None:
        raise SystemExit(f"{args.model} is a {runtime.task.name} model, not a repeat-copy one")
    sequences = args.sequences or (4 if args.small else 50)
    rows = [measure(runtime, length, repeats, sequences, args.seed)
            for length, repeats in (SMALL_POINTS if args.small else POINTS)]
    result = {"benchmark": "repeat_count", "mode": "small" if args.small else "full",
              "model": args.model, "rows": rows}
    write_results(args.out, "repeat_count", args.small, result, markdown(result))


if __name__ == "__main__":
    main()
