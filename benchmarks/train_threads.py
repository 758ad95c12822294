"""Benchmark: the training step with TensorFlow's inter-op threads at 1 against ``ntm train``'s
default (``--threads auto``: the CPUs the process may use), one intra-op thread each.

Thread pools are fixed when TensorFlow starts, so every measurement is its own process: the
settings alternate round by round (1, auto, 1, auto, ...), each timing the same training steps
on the same batches (copy, the paper-size model, batch 4) after one untimed step that traces the
graph. It reports the median milliseconds per step of each setting, the ratio round by round,
and checks that both settings end on the same loss (threads change the speed, not the numbers).

    python benchmarks/train_threads.py                # 4 rounds of 300 steps
    python benchmarks/train_threads.py --small        # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.results_io import write_results  # noqa: E402
from ntm.cli.common import available_cpus  # noqa: E402

SMALL_MODEL = {"memory_size": 16, "memory_width": 6, "controller_size": 16}


def time_steps(inter_op: int, steps: int, small: bool) -> dict:
    """In this process (TensorFlow not yet started): ms per training step with ``inter_op``
    inter-op threads and one intra-op thread, and the last step's loss."""
    from ntm.cli.common import quiet_tensorflow

    tf = quiet_tensorflow(1, inter_op=inter_op)
    import numpy as np

    from ntm.model.config import ModelConfig
    from ntm.contract.tasks import get_task
    from ntm.model.machine import NTM
    from ntm.training.optimizers import make_optimizer
    from ntm.training.steps import make_train_step

    config = ModelConfig(**SMALL_MODEL) if small else ModelConfig()
    task = get_task("copy", train_lengths=(1, 4)) if small else get_task("copy")
    model = NTM(config, seed=1)
    optimizer = make_optimizer("rmsprop", model.trainable_variables, 2e-4, 0.9)
    step = make_train_step(model, optimizer, 10.0, 50.0, tf.Variable(0.0))
    noise = np.zeros((4, config.memory_size, config.memory_width), np.float32)

    def run(i: int) -> float:
        batch = task.batch(np.random.default_rng([0, 0, i]), 4)
        loss, _, _ = step(batch.inputs, batch.targets, batch.mask, noise)
        return float(loss)

    run(0)  # traces the graph
    start = time.perf_counter()
    for i in range(1, steps + 1):
        loss = run(i)
    return {"inter_op": inter_op, "ms_per_step": 1000 * (time.perf_counter() - start) / steps,
            "last_loss": loss}


def measure(inter_op: int, steps: int, small: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(inter_op), "--steps", str(steps)]
    out = subprocess.run(cmd + (["--small"] if small else []), capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    auto = result["auto_inter_op"]
    lines = [f"# Training step: inter-op threads 1 against auto ({auto}), one intra-op thread "
             f"({result['mode']})", "",
             f"{result['steps']} copy training steps per process (batch 4, lengths "
             f"{result['lengths']}), settings alternating round by round; {result['cpus']} CPUs.",
             "", f"| round | 1 thread: ms/step | {auto} threads: ms/step | speed-up |",
             "| --- | --- | --- | --- |"]
    for r in result["rounds"]:
        lines.append(f"| {r['round']} | {r['one']:.1f} | {r['auto']:.1f} | {r['speedup']:.2f}x |")
    lines += [f"| **median** | {result['median_one']:.1f} | {result['median_auto']:.1f} | "
              f"{result['median_speedup']:.2f}x |", "",
              "Same last loss with both settings in every round: "
              f"{'yes' if result['same_loss'] else 'NO'}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny model, a few steps")
    parser.add_argument("--rounds", type=int, default=None, help="[default: 4; small: 1]")
    parser.add_argument("--steps", type=int, default=None, help="[default: 300; small: 5]")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps or (5 if args.small else 300)
    if args.child is not None:
        print(json.dumps(time_steps(args.child, steps, args.small)))
        return
    auto = available_cpus()
    rounds = []
    for n in range(1, (args.rounds or (1 if args.small else 4)) + 1):
        one, many = measure(1, steps, args.small), measure(auto, steps, args.small)
        rounds.append({"round": n, "one": one["ms_per_step"], "auto": many["ms_per_step"],
                       "speedup": one["ms_per_step"] / many["ms_per_step"],
                       "same_loss": one["last_loss"] == many["last_loss"]})
        print(f"round {n}: {rounds[-1]}", flush=True)
    result = {"benchmark": "train_threads", "mode": "small" if args.small else "full",
              "cpus": auto, "auto_inter_op": auto, "steps": steps,
              "lengths": "1-4" if args.small else "1-20", "rounds": rounds,
              "median_one": statistics.median(r["one"] for r in rounds),
              "median_auto": statistics.median(r["auto"] for r in rounds),
              "median_speedup": statistics.median(r["speedup"] for r in rounds),
              "same_loss": all(r["same_loss"] for r in rounds)}
    write_results(args.out, "train_threads", args.small, result, markdown(result))


if __name__ == "__main__":
    main()
