"""Benchmark: ``ntm serve`` under a bounded closed-loop load, dynamic batching on vs off, and
the server's throughput as a fraction of the in-process runtime's on the same requests.

The same copy requests (one sequence each, fixed length) go, in one run:
- to ``ntm serve`` with dynamic batching, then without, from N concurrent clients on loopback
  (requests/s, p50/p99 latency, errors; every answer is checked against its input);
- through ``ModelRuntime.predict`` in this process: one request at a time, and in batches of
  N requests (what the server's batcher can at best merge with N clients).

Client and server share this machine's CPUs, so the server figures include the client's cost.

    python benchmarks/serving.py                   # 32 clients, 3000 requests, copy length 20
    python benchmarks/serving.py --small           # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.loadgen import Server, http_post, run_load  # noqa: E402
from benchmarks.results_io import write_results  # noqa: E402

TARGETS = {"batching_speedup": 3.0, "server_fraction_of_in_process": 0.7}


def make_requests(count: int, length: int, width: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"sequence": rng.integers(0, 2, (length, width)).tolist()} for _ in range(count)]


def answer_checker(instances: list[dict]):
    """check(i, body) -> True when the server copied request i's sequence exactly."""
    def check(i: int, body: bytes) -> bool:
        return json.loads(body)["predictions"][0]["output"] == instances[i]["sequence"]
    return check


def in_process_rate(model: str, instances: list[dict], batch: int) -> float:
    """Requests/s of ModelRuntime.predict over ``instances`` in groups of ``batch``."""
    from ntm.serving.models import resolve
    from ntm.serving.runtime import ModelRuntime

    runtime = ModelRuntime(resolve(model))
    runtime.predict(instances[:batch])
    start = time.perf_counter()
    for i in range(0, len(instances), batch):
        runtime.predict(instances[i:i + batch])
    return len(instances) / (time.perf_counter() - start)


def serve_rate(model: str, bodies: list[bytes], concurrency: int, check, batching: bool,
               args) -> dict:
    flags = ["--model", model, "--max-batch-size", str(args.max_batch_size),
             "--max-queue-delay-ms", str(args.delay_ms)]
    if not batching:
        flags.append("--no-batching")
    with Server(flags) as server:
        run_load("127.0.0.1", server.port, bodies[:concurrency * 2], concurrency)  # warm-up
        rss_before = server.rss_bytes()
        result = run_load("127.0.0.1", server.port, bodies, concurrency, check)
        summary = result.summary()
        summary["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
        summary["rss_growth_mb"] = round((server.rss_bytes() - rss_before) / 2**20, 2)
        summary["exit_code"] = server.stop()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="few requests, few clients")
    parser.add_argument("--model", default="copy")
    parser.add_argument("--length", type=int, default=20, help="copy sequence length")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    count = args.requests or (60 if args.small else 3000)
    concurrency = args.concurrency or (4 if args.small else 32)
    instances = make_requests(count, args.length, 8, args.seed)
    path = f"/v1/models/{args.model}:predict"
    bodies = [http_post(path, json.dumps({"instances": [inst]}).encode()) for inst in instances]
    check = answer_checker(instances)

    batched = serve_rate(args.model, bodies, concurrency, check, True, args)
    unbatched = serve_rate(args.model, bodies, concurrency, check, False, args)
    alone = in_process_rate(args.model, instances, 1)
    grouped = in_process_rate(args.model, instances, concurrency)
    result = {
        "benchmark": "serving", "mode": "small" if args.small else "full",
        "command": "python benchmarks/serving.py" + (" --small" if args.small else ""),
        "model": args.model, "length": args.length, "requests": count,
        "concurrency": concurrency, "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.delay_ms,
        "server": {"batching": batched, "no_batching": unbatched},
        "in_process": {"one_at_a_time_per_s": round(alone, 1),
                       f"batches_of_{concurrency}_per_s": round(grouped, 1)},
        "batching_speedup": round(batched["requests_per_s"] / unbatched["requests_per_s"], 2),
        "server_fraction_of_in_process": round(batched["requests_per_s"] / grouped, 3),
        "cpu_count": os.cpu_count(),
    }
    result["targets"] = {k: {"target": t, "measured": result[k], "met": result[k] >= t}
                         for k, t in TARGETS.items()}
    write_results(args.out, "serving", args.small, result, markdown(result))


def markdown(r: dict) -> str:
    n = r["concurrency"]
    lines = [f"# Serving: {r['model']} length {r['length']}, {r['requests']} requests from "
             f"{n} closed-loop clients on loopback ({r['mode']})", "",
             f"Command: `{r['command']}`; max batch {r['max_batch_size']}, queue delay "
             f"{r['max_queue_delay_ms']} ms; client and server share {r['cpu_count']} CPUs.", "",
             "| | requests/s | p50 ms | p99 ms | errors | server RSS MB (growth) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for label, key in (("ntm serve, dynamic batching", "batching"),
                       ("ntm serve, no batching", "no_batching")):
        s = r["server"][key]
        lines.append(f"| {label} | {s['requests_per_s']:,.0f} | {s['p50_ms']} | {s['p99_ms']} | "
                     f"{s['errors']} | {s['rss_mb']} ({s['rss_growth_mb']:+}) |")
    ip = r["in_process"]
    lines.append(f"| in process, one at a time | {ip['one_at_a_time_per_s']:,.0f} | | | | |")
    lines.append(f"| in process, batches of {n} | {ip[f'batches_of_{n}_per_s']:,.0f} | | | | |")
    lines += ["", "| target | wanted | measured | met |", "| --- | --- | --- | --- |",
              f"| batching vs no batching at {n} clients | >= {TARGETS['batching_speedup']}x | "
              f"{r['batching_speedup']}x | {'yes' if r['targets']['batching_speedup']['met'] else 'no'} |",
              f"| server vs in-process (batches of {n}) | >= "
              f"{TARGETS['server_fraction_of_in_process']:.0%} | "
              f"{r['server_fraction_of_in_process']:.0%} | "
              f"{'yes' if r['targets']['server_fraction_of_in_process']['met'] else 'no'} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
