"""Soak: a bounded run of many requests against one ``ntm serve`` process on loopback.

Copy and recall requests of varied lengths (every answer checked) from N closed-loop clients;
reports errors, requests/s, p50/p99 latency and the server's resident memory sampled through
the run (after a warm-up), so a leak shows as growth.

    python benchmarks/soak.py                      # 20,000 requests, 64 clients
    python benchmarks/soak.py --small              # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
from ntm.serving.plane import predict_tasks

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.loadgen import Server, http_post, run_load  # noqa: E402
from benchmarks.results_io import write_results  # noqa: E402


def make_traffic(count: int, seed: int) -> tuple[list[bytes], list]:
    """Pre-encoded requests alternating copy (length 1-30) and recall (2-12 items), each with
    (model, request, answer key, true answer)."""
    from ntm.contract.tasks import Difficulty, get_task

    rng = np.random.default_rng(seed)
    recall = get_task("recall")
    bodies, expected = [], []
    for i in range(count):
        if i % 2 == 0:
            request = {"sequence": rng.integers(0, 2, (int(rng.integers(1, 31)), 8)).tolist()}
            model, key, truth = "copy", "output", request["sequence"]
        else:
            request, answer = recall.request_example(rng, Difficulty(int(rng.integers(2, 13))))
            model, key, truth = "recall", "item", answer["item"]
        bodies.append(http_post(f"/v1/models/{model}:predict",
                                json.dumps({"instances": [request]}).encode()))
        expected.append((model, request, key, truth))
    return bodies, expected


class AnswerCheck:
    """check(i, body): the server's answer must be the truth, or else exactly what the same
    model answers in this process (then it is the model's own mistake, counted apart: a
    serving fault is only an answer the model itself would not give)."""

    def __init__(self, expected: list):
        from ntm.serving.models import bundled_models
        from ntm.serving.runtime import ModelRuntime

        self.expected = expected
        self.runtimes = {name: ModelRuntime(path) for name, path in bundled_models().items()}
        self.model_mistakes = 0

    def __call__(self, i: int, body: bytes) -> bool:
        model, request, key, truth = self.expected[i]
        answer = json.loads(body)["predictions"][0][key]
        if answer == truth:
            return True
        if predict_tasks(self.runtimes[model], [request])[0][key] == answer:
            self.model_mistakes += 1
            return True
        return False


class RssSampler(threading.Thread):
    """Samples a server's RSS every ``interval`` seconds until stopped."""

    def __init__(self, server: Server, interval: float = 0.5):
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append(self.server.rss_bytes())
            self._stop_event.wait(self.interval)

    def stop(self) -> list[int]:
        self._stop_event.set()
        self.join()
        return self.samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    count = args.requests or (400 if args.small else 20_000)
    concurrency = args.concurrency or (16 if args.small else 64)
    bodies, expected = make_traffic(count, args.seed)

    check = AnswerCheck(expected)

    with Server(["--model", "copy", "--model", "recall"]) as server:
        warm = min(len(bodies), 4 * concurrency)
        run_load("127.0.0.1", server.port, bodies[:warm], concurrency)
        rss_start = server.rss_bytes()
        sampler = RssSampler(server)
        sampler.start()
        result = run_load("127.0.0.1", server.port, bodies, concurrency, check)
        samples = sampler.stop()
        rss_end = server.rss_bytes()
        exit_code = server.stop()
    summary = result.summary()
    report = {
        "benchmark": "soak", "mode": "small" if args.small else "full",
        "command": "python benchmarks/soak.py" + (" --small" if args.small else ""),
        "concurrency": concurrency, **summary, "model_mistakes": check.model_mistakes,
        "rss_start_mb": round(rss_start / 2**20, 1), "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_max_mb": round(max(samples + [rss_end]) / 2**20, 1),
        "rss_growth_mb": round((rss_end - rss_start) / 2**20, 2),
        "server_exit_code": exit_code, "cpu_count": os.cpu_count(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_results(args.out, "soak", args.small, report, markdown(report))


def markdown(r: dict) -> str:
    return "\n".join([
        f"# Soak: {r['requests']:,} copy/recall requests, {r['concurrency']} clients ({r['mode']})",
        "", f"Command: `{r['command']}`; client and server share {r['cpu_count']} CPUs.", "",
        "| errors | model's own mistakes | requests/s | p50 ms | p99 ms | RSS start MB | "
        "RSS max MB | RSS growth MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {r['errors']} | {r['model_mistakes']} | {r['requests_per_s']:,.0f} | {r['p50_ms']} | "
        f"{r['p99_ms']} | "
        f"{r['rss_start_mb']} | {r['rss_max_mb']} | {r['rss_growth_mb']:+} |", ""])


if __name__ == "__main__":
    main()
