"""Benchmark: ``ntm serve`` under a bounded closed-loop load, dynamic batching on vs off, and
the server's throughput as a fraction of the in-process runtime's on the same requests.

The same copy requests (one sequence each, fixed length) go, in one run:
- to ``ntm serve`` with dynamic batching, then without, from N concurrent clients on loopback
  (requests/s, p50/p99 latency, errors; every answer is checked against its input);
- with batching, as task JSON without per-step probabilities (``"return_probabilities":
  false``), and as V2 binary tensors (the probabilities output only, in binary);
- through ``ModelRuntime.predict`` in this process: one request at a time, and in batches of
  N requests (what the server's batcher can at best merge with N clients).

Client and server share this machine's CPUs, so the server's requests/s include the client's
cost; the server's CPU seconds per request (its process's user + system time over the load)
do not, and are set against the CPU per request of the in-process batches.

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

TARGETS = {"batching_speedup": 3.0, "server_fraction_of_in_process": 0.7,
           "server_cpu_per_request_vs_in_process": 1.5}
LOWER_IS_BETTER = {"server_cpu_per_request_vs_in_process"}


def make_requests(count: int, length: int, width: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"sequence": rng.integers(0, 2, (length, width)).tolist()} for _ in range(count)]


def answer_checker(instances: list[dict]):
    """check(i, body) -> True when the server copied request i's sequence exactly."""
    def check(i: int, body: bytes) -> bool:
        return json.loads(body)["predictions"][0]["output"] == instances[i]["sequence"]
    return check


def v2_binary_bodies(path: str, instances: list[dict], model: str) -> list[bytes]:
    """Each copy request as a V2 binary-tensor POST asking for the probabilities in binary."""
    from ntm.serving.models import resolve
    from ntm.serving.runtime import ModelRuntime

    task = ModelRuntime(resolve(model)).task
    bodies = []
    for inst in instances:
        x = task.encode(inst).inputs[None].astype(np.float32)
        head = json.dumps({
            "inputs": [{"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }).encode()
        bodies.append(http_post(path, head + x.tobytes(),
                                headers={"Inference-Header-Content-Length": len(head)}))
    return bodies


def v2_binary_checker(instances: list[dict]):
    """check(i, body) -> True when the binary probabilities copy request i's sequence."""
    decoder = json.JSONDecoder()

    def check(i: int, body: bytes) -> bool:
        text = body.decode("latin-1")
        head, end = decoder.raw_decode(text)
        [output] = head["outputs"]
        probs = np.frombuffer(body[end:], np.float32).reshape(output["shape"])
        length = len(instances[i]["sequence"])
        bits = (probs[0, length + 1: 2 * length + 1] > 0.5).astype(int).tolist()
        return bits == instances[i]["sequence"]
    return check


def in_process_rate(model: str, instances: list[dict], batch: int) -> tuple[float, float]:
    """(requests/s, CPU ms per request) of ModelRuntime.predict over ``instances`` in groups
    of ``batch``."""
    from ntm.serving.models import resolve
    from ntm.serving.runtime import ModelRuntime

    runtime = ModelRuntime(resolve(model))
    runtime.predict(instances[:batch])
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(instances), batch):
        runtime.predict(instances[i:i + batch])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return len(instances) / seconds, 1000 * cpu / len(instances)


def serve_rate(model: str, bodies: list[bytes], concurrency: int, check, batching: bool,
               args) -> dict:
    flags = ["--model", model, "--max-batch-size", str(args.max_batch_size),
             "--max-queue-delay-ms", str(args.delay_ms)]
    if not batching:
        flags.append("--no-batching")
    with Server(flags) as server:
        run_load("127.0.0.1", server.port, bodies[:concurrency * 2], concurrency)  # warm-up
        rss_before, cpu_before = server.rss_bytes(), server.cpu_seconds()
        result = run_load("127.0.0.1", server.port, bodies, concurrency, check)
        summary = result.summary()
        summary["server_cpu_ms_per_request"] = round(
            1000 * (server.cpu_seconds() - cpu_before) / len(bodies), 3)
        summary["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
        summary["rss_growth_mb"] = round((server.rss_bytes() - rss_before) / 2**20, 2)
        summary["exit_code"] = server.stop()
    return summary


def thread_plan(model: str, instances: list[dict], concurrency: int, args) -> dict:
    """Threads planned per batch size (``--large-batch-threads``), 2 against 1, on two servers
    up at once: one client sending envelopes of ``max_batch_size`` requests, each round to both
    servers in a random order; then ``concurrency`` clients of one request each, the servers
    loaded in turn (A B B A ...). ``ratio`` = the 1-thread figure over the 2-thread one for
    latency, the 2-thread over the 1-thread for requests/s."""
    path = f"/v1/models/{model}:predict"
    sent = instances[:args.max_batch_size]
    envelope = http_post(path, json.dumps({"instances": sent}).encode())
    singles = [http_post(path, json.dumps({"instances": [inst]}).encode()) for inst in instances]
    flags = ["--model", model, "--max-batch-size", str(args.max_batch_size),
             "--max-queue-delay-ms", str(args.delay_ms), "--large-batch-threads"]
    check_single = answer_checker(instances)

    def check_envelope(i: int, body: bytes) -> bool:
        return [p["output"] for p in json.loads(body)["predictions"]] == \
            [inst["sequence"] for inst in sent]

    errors = 0
    rng = np.random.default_rng(args.seed)
    latency: dict[str, list[float]] = {"2": [], "1": []}
    rate: dict[str, list[float]] = {"2": [], "1": []}
    with Server(flags + ["2"]) as two, Server(flags + ["1"]) as one:
        servers = {"2": two, "1": one}
        for server in servers.values():
            run_load("127.0.0.1", server.port, [envelope] * 2, 1)  # warm-up
        for _ in range(args.plan_rounds):
            for key in rng.permutation(list(servers)):
                result = run_load("127.0.0.1", servers[key].port, [envelope] * 3, 1,
                                  check_envelope)
                latency[key] += result.latencies
                errors += result.summary()["errors"]
        for key in ["2", "1", "1", "2"] * max(1, args.plan_rounds // 10):
            result = run_load("127.0.0.1", servers[key].port, singles, concurrency, check_single)
            rate[key].append(result.summary()["requests_per_s"])
            errors += result.summary()["errors"]
    ms = {k: 1000 * float(np.median(v)) for k, v in latency.items()}
    per_s = {k: float(np.median(v)) for k, v in rate.items()}
    return {"envelope_sequences": args.max_batch_size, "envelope_calls": len(latency["2"]),
            "envelope_median_ms": {k: round(v, 2) for k, v in ms.items()},
            "envelope_speedup": round(ms["1"] / ms["2"], 3),
            "clients": concurrency, "load_runs": len(rate["2"]),
            "clients_requests_per_s": {k: round(v, 1) for k, v in per_s.items()},
            "clients_ratio": round(per_s["2"] / per_s["1"], 3), "errors": errors}


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
    parser.add_argument("--plan-rounds", type=int, default=None,
                        help="rounds of the --large-batch-threads comparison [default: 20; "
                             "small: 2]")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    count = args.requests or (60 if args.small else 3000)
    concurrency = args.concurrency or (4 if args.small else 32)
    instances = make_requests(count, args.length, 8, args.seed)
    path = f"/v1/models/{args.model}:predict"
    bodies = [http_post(path, json.dumps({"instances": [inst]}).encode()) for inst in instances]
    check = answer_checker(instances)

    trimmed = [http_post(path, json.dumps({"instances": [{**inst, "return_probabilities": False}]})
                         .encode()) for inst in instances]
    v2_path = f"/v2/models/{args.model}/infer"

    batched = serve_rate(args.model, bodies, concurrency, check, True, args)
    unbatched = serve_rate(args.model, bodies, concurrency, check, False, args)
    batched_trimmed = serve_rate(args.model, trimmed, concurrency, check, True, args)
    batched_v2 = serve_rate(args.model, v2_binary_bodies(v2_path, instances, args.model),
                            concurrency, v2_binary_checker(instances), True, args)
    args.plan_rounds = args.plan_rounds or (2 if args.small else 20)
    plan = thread_plan(args.model, instances[:min(count, 1000)], concurrency, args)
    alone, alone_cpu = in_process_rate(args.model, instances, 1)
    grouped, grouped_cpu = in_process_rate(args.model, instances, concurrency)
    result = {
        "benchmark": "serving", "mode": "small" if args.small else "full",
        "command": "python benchmarks/serving.py" + (" --small" if args.small else ""),
        "model": args.model, "length": args.length, "requests": count,
        "concurrency": concurrency, "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.delay_ms,
        "server": {"batching": batched, "no_batching": unbatched,
                   "batching_trimmed": batched_trimmed, "batching_v2_binary": batched_v2},
        "in_process": {"one_at_a_time_per_s": round(alone, 1),
                       "one_at_a_time_cpu_ms": round(alone_cpu, 3),
                       f"batches_of_{concurrency}_per_s": round(grouped, 1),
                       f"batches_of_{concurrency}_cpu_ms": round(grouped_cpu, 3)},
        "batching_speedup": round(batched["requests_per_s"] / unbatched["requests_per_s"], 2),
        "server_fraction_of_in_process": round(batched["requests_per_s"] / grouped, 3),
        "server_cpu_per_request_vs_in_process": round(
            batched["server_cpu_ms_per_request"] / grouped_cpu, 2),
        "cpu_count": os.cpu_count(),
        "thread_plan": plan,
    }
    result["targets"] = {k: {"target": t, "measured": result[k],
                             "met": result[k] <= t if k in LOWER_IS_BETTER else result[k] >= t}
                         for k, t in TARGETS.items()}
    write_results(args.out, "serving", args.small, result, markdown(result))


def markdown(r: dict) -> str:
    n = r["concurrency"]
    lines = [f"# Serving: {r['model']} length {r['length']}, {r['requests']} requests from "
             f"{n} closed-loop clients on loopback ({r['mode']})", "",
             f"Command: `{r['command']}`; max batch {r['max_batch_size']}, queue delay "
             f"{r['max_queue_delay_ms']} ms; client and server share {r['cpu_count']} CPUs.", "",
             "| | requests/s | p50 ms | p99 ms | errors | CPU ms / request | server RSS MB "
             "(growth) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, key in (("ntm serve, dynamic batching", "batching"),
                       ("ntm serve, no batching", "no_batching"),
                       ("ntm serve, batching, return_probabilities false", "batching_trimmed"),
                       ("ntm serve, batching, V2 binary tensors", "batching_v2_binary")):
        s = r["server"].get(key)
        if s is None:
            continue
        lines.append(f"| {label} | {s['requests_per_s']:,.0f} | {s['p50_ms']} | {s['p99_ms']} | "
                     f"{s['errors']} | {s.get('server_cpu_ms_per_request', '')} | "
                     f"{s['rss_mb']} ({s['rss_growth_mb']:+}) |")
    ip = r["in_process"]
    lines.append(f"| in process, one at a time | {ip['one_at_a_time_per_s']:,.0f} | | | | "
                 f"{ip.get('one_at_a_time_cpu_ms', '')} | |")
    lines.append(f"| in process, batches of {n} | {ip[f'batches_of_{n}_per_s']:,.0f} | | | | "
                 f"{ip.get(f'batches_of_{n}_cpu_ms', '')} | |")
    lines += ["", "| target | wanted | measured | met |", "| --- | --- | --- | --- |",
              f"| batching vs no batching at {n} clients | >= {TARGETS['batching_speedup']}x | "
              f"{r['batching_speedup']}x | {'yes' if r['targets']['batching_speedup']['met'] else 'no'} |",
              f"| server vs in-process (batches of {n}) | >= "
              f"{TARGETS['server_fraction_of_in_process']:.0%} | "
              f"{r['server_fraction_of_in_process']:.0%} | "
              f"{'yes' if r['targets']['server_fraction_of_in_process']['met'] else 'no'} |",
              f"| server CPU per request vs in-process (batches of {n}) | <= "
              f"{TARGETS['server_cpu_per_request_vs_in_process']}x | "
              f"{r['server_cpu_per_request_vs_in_process']}x | "
              f"{'yes' if r['targets']['server_cpu_per_request_vs_in_process']['met'] else 'no'} |"]
    plan = r.get("thread_plan")
    if plan:
        env_ms, per_s = plan["envelope_median_ms"], plan["clients_requests_per_s"]
        lines += ["", "## Threads planned per batch size (`--large-batch-threads`)", "",
                  "Two servers up at once, one with 2 threads for merged batches of 32 or more "
                  "(`--large-batch-threads 2`), one with 1 (the default):", "",
                  "| load | 2 threads | 1 thread | ratio |", "| --- | --- | --- | --- |",
                  f"| one client, envelopes of {plan['envelope_sequences']} sequences "
                  f"({plan['envelope_calls']} calls each, interleaved): median ms | "
                  f"{env_ms['2']} | {env_ms['1']} | {plan['envelope_speedup']}x faster |",
                  f"| {plan['clients']} clients of one sequence ({plan['load_runs']} runs each, "
                  f"A B B A): requests/s | {per_s['2']:,.0f} | {per_s['1']:,.0f} | "
                  f"{plan['clients_ratio']}x |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
