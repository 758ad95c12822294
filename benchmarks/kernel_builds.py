"""Benchmark: builds of the fused kernel side by side, for measuring a change to it.

Each build (a ``libntm_ops.so``) opens the bundled copy model's fused twin in a session of its
own, in one process with the standard model; every round runs one call on each session in a
shuffled order (the call after another engine's starts with that engine's data in the caches,
so a fixed order favours whoever is last), for a few seconds per case; medians, and each
build's speed-up over the standard model. Run it twice: where a build's arrays land in memory
moves its speed too, and a second process gives them other places.

    g++ ... kernels/ntm_ops.cc -o /tmp/new.so         # ntm build-kernel --out /tmp/new.so
    python benchmarks/kernel_builds.py ntm/kernel/lib/libntm_ops.so /tmp/new.so
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.fused_kernel import RUN, inputs, one_thread_session  # noqa: E402

CASES = ((20, 1, 128), (20, 64, 128), (1000, 1, 1024))  # copy length, batch, memory rows


def compare(libraries: list[Path], seconds: float) -> list[dict]:
    """[{case, microseconds per call of each session (median)}] over CASES."""
    from ntm.serving.models import bundled_models, fused_twin

    standard = bundled_models()["copy"]
    sessions = {"standard": one_thread_session(standard)}
    sessions.update({str(lib): one_thread_session(fused_twin(standard), kernel=lib)
                     for lib in libraries})
    rng = random.Random(0)
    rows = []
    for length, batch, memory in CASES:
        x = inputs("copy", length, batch, seed=11)
        feeds = {"inputs": x, "memory_size": np.array([memory], np.int32)}
        for s in sessions.values():
            s.run(RUN, feeds)
        times = {name: [] for name in sessions}
        order = list(sessions.items())
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            rng.shuffle(order)
            for name, s in order:
                start = time.perf_counter()
                s.run(RUN, feeds)
                times[name].append(time.perf_counter() - start)
        rows.append({"length": length, "batch": batch, "rows": memory,
                     "us": {name: float(np.median(t)) * 1e6 for name, t in times.items()}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libraries", type=Path, nargs="+", help="libntm_ops.so builds")
    parser.add_argument("--seconds", type=float, default=8.0, help="per case")
    args = parser.parse_args()
    missing = [str(p) for p in args.libraries if not p.is_file()]
    if missing:
        raise SystemExit(f"no such library: {', '.join(missing)}")
    for row in compare(args.libraries, args.seconds):
        us = row["us"]
        cells = [f"{Path(name).name if name != 'standard' else name} {t:.0f} us"
                 + ("" if name == "standard" else f" ({us['standard'] / t:.2f}x)")
                 for name, t in us.items()]
        print(f"copy {row['length']}, batch {row['batch']}, {row['rows']} rows: "
              + ", ".join(cells))


if __name__ == "__main__":
    main()
