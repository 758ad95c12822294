"""Run the serving tests several times in a row while busy-loop processes keep every core busy.

A test that waits on a fixed sleep, or asserts a latency a quiet machine happens to meet, passes
alone and fails here, as it would on a shared CI machine. Not collected by pytest (no test_
prefix); run it from the repository root:

    .venv/bin/python tests/stress_serving.py                  # 5 runs of tests/serving, 2 busy
    .venv/bin/python tests/stress_serving.py --runs 3 --busy 4 -- tests/serving/test_server.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def spin() -> None:
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="pytest runs in a row [5]")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2,
                        help="busy-loop processes [one per core]")
    parser.add_argument("pytest_args", nargs="*", default=["tests/serving"],
                        help="what pytest runs [tests/serving]")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so `finally` stops the busy loops
    busy = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for process in busy:
        process.start()
    print(f"{args.busy} busy-loop processes: {[p.pid for p in busy]}", flush=True)
    failures = 0
    try:
        for run in range(1, args.runs + 1):
            start = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                                     "no:cacheprovider", *args.pytest_args], cwd=REPO,
                                    capture_output=True, text=True)
            lines = result.stdout.strip().splitlines()
            summary = lines[-1] if lines else result.stderr.strip()[-300:]
            print(f"run {run}/{args.runs}: exit {result.returncode} in "
                  f"{time.monotonic() - start:.0f} s: {summary}", flush=True)
            if result.returncode != 0:
                failures += 1
                print(result.stdout[-6000:], flush=True)
    finally:
        for process in busy:
            process.terminate()
            process.join(10)
    print(f"{args.runs - failures} of {args.runs} runs passed under load")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
