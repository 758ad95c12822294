"""Benchmark: time for ``ntm train --task copy`` with its defaults to reach < 0.1 bits/seq.

Trains copy (lengths 1-20) with the default settings in a fresh run directory, reads the
held-out evaluations from its metrics file, and writes JSON + a Markdown table with the steps,
sequences and wall seconds to the first evaluation below 0.1 bits/seq, where training stopped,
and the ``ntm evaluate`` generalisation table. The peer to beat (../shared/REFERENCE.md):
pytorch-ntm first < 0.1 after ~9.8k sequences, 16.5 minutes on this machine.

    python benchmarks/train_convergence.py                 # the full benchmark
    python benchmarks/train_convergence.py --small         # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.results_io import write_results  # noqa: E402

THRESHOLD = 0.1


def run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ,
                                                                    "TF_CPP_MIN_LOG_LEVEL": "3"})
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return out.stdout + out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a few steps of a tiny model")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ntm = [sys.executable, "-m", "ntm.cli.main"]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "copy"
        train = ["train", "--task", "copy", "--out", str(run_dir), "--seed", str(args.seed)]
        if args.small:
            train += ["--steps", "20", "--eval-every", "10", "--memory-size", "24",
                      "--controller-size", "16", "--max-length", "4", "--eval-size", "8"]
        start = time.perf_counter()
        run(ntm + train)
        total_wall = time.perf_counter() - start
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in records if "eval_bits_per_seq" in r]
        first = next((r for r in evals if r["eval_bits_per_seq"] < THRESHOLD), None)
        summary = json.loads((run_dir / "summary.json").read_text())
        points = "5,10,20" if args.small else "10,20,30,50,80,100,120"
        table_path = Path(tmp) / "table.json"
        run(ntm + ["evaluate", str(run_dir), "--points", points, "-n", "8" if args.small else "100",
                   "--json", str(table_path)])
        table = json.loads(table_path.read_text())["rows"]
    result = {
        "benchmark": "train_convergence",
        "mode": "small" if args.small else "full",
        "command": "ntm " + " ".join(a for a in train if a not in ("--out", str(run_dir))),
        "seed": args.seed,
        "threshold_bits_per_seq": THRESHOLD,
        "first_below_threshold": None if first is None else {
            "step": first["step"], "sequences": first["sequences"],
            "train_seconds": first["elapsed"]},
        "stopped": {"reason": summary["stopped"], "step": summary["step"],
                    "sequences": summary["sequences"],
                    "train_seconds": summary["elapsed_seconds"]},
        "sequences_per_s": round(summary["sequences"] / max(summary["elapsed_seconds"], 1e-9), 1),
        "process_wall_seconds": round(total_wall, 1),
        "peer": {"name": "pytorch-ntm (batch 1, RMSProp)", "sequences": 9800,
                 "seconds": 16.5 * 60},
        "evaluate": table,
        "cpu_count": os.cpu_count(),
    }
    write_results(args.out, "train_convergence", args.small, result, markdown(result))


def markdown(r: dict) -> str:
    f = r["first_below_threshold"]
    s = r["stopped"]
    lines = [f"# Training convergence: copy, lengths 1-20, defaults ({r['mode']})", "",
             f"Command: `{r['command']}`", "",
             "| | steps | sequences | training seconds |", "| --- | --- | --- | --- |"]
    if f:
        lines.append(f"| first held-out < {r['threshold_bits_per_seq']} bits/seq | {f['step']} | "
                     f"{f['sequences']} | {f['train_seconds']:.0f} |")
    else:
        lines.append(f"| first held-out < {r['threshold_bits_per_seq']} bits/seq | not reached | | |")
    lines.append(f"| stopped ({s['reason']}) | {s['step']} | {s['sequences']} | "
                 f"{s['train_seconds']:.0f} |")
    lines.append(f"| training throughput | | {r['sequences_per_s']:.0f} sequences/s | |")
    lines.append(f"| peer: {r['peer']['name']} | | {r['peer']['sequences']} | "
                 f"{r['peer']['seconds']:.0f} |")
    if f:
        lines += ["", f"Speed-up over the peer in wall time to < 0.1 bits/seq: "
                      f"{r['peer']['seconds'] / max(f['train_seconds'], 1e-9):.1f}x."]
    lines += ["", "| length | bits/seq | worst | perfect |", "| --- | --- | --- | --- |"]
    lines += [f"| {row['length']} | {row['mean_bits']:.3f} | {row['worst_bits']:.0f} | "
              f"{100 * row['perfect_fraction']:.0f}% |" for row in r["evaluate"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
