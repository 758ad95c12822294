"""Benchmark: ``ntm serve`` under a bounded closed-loop load, dynamic batching on vs off, and
the server's throughput as a fraction of the in-process runtime's on the same requests.

The same copy requests (one sequence each, fixed length) go, in one run:
- to ``ntm serve`` with dynamic batching and without, from N concurrent clients on loopback
  (requests/s, p50/p99 latency, errors; every answer is checked against its input);
- with batching, as task JSON without per-step probabilities (``"return_probabilities":
  false``), and as V2 binary tensors (the probabilities output only, in binary);
- through ``ModelRuntime.predict`` in this process: one request at a time, and in batches of
  N requests (what the server's batcher can at best merge with N clients).

Each load has its own server, all started at once, and every load (and the in-process runs)
runs once per round, the order alternating round by round, so that drift on the shared machine
hits every row alike; figures are medians over the rounds. Client and server share this
machine's CPUs, so the server's requests/s include the client's cost; the server's CPU seconds
per request (its process's user + system time over the load) do not, and are set against the
CPU per request of the in-process batches (of N, and of the server's own mean merged batch).

    python benchmarks/serving.py                   # 32 clients, 3000 requests, copy length 20
    python benchmarks/serving.py --small           # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from ntm.serving.plane import predict_tasks

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.loadgen import Server, http_post, pooled_rounds, run_load  # noqa: E402
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
    predict_tasks(runtime, instances[:batch])
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(instances), batch):
        predict_tasks(runtime, instances[i:i + batch])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return len(instances) / seconds, 1000 * cpu / len(instances)


def merged_batches(port: int) -> tuple[float, float]:
    """(sequences, runs) the server has merged so far, from its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("ntm_batch_size_sum", "ntm_batch_size_count"):
            if line.startswith(name + "{"):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values.get("ntm_batch_size_sum", 0.0), values.get("ntm_batch_size_count", 0.0)


def server_flags(model: str, batching: bool, args) -> list[str]:
    flags = ["--model", model, "--max-batch-size", str(args.max_batch_size),
             "--max-queue-delay-ms", str(args.delay_ms)]
    return flags if batching else flags + ["--no-batching"]


def measure_load(server: Server, bodies: list[bytes], concurrency: int, check) -> dict:
    """One closed-loop load on ``server``: the load's summary with the server's CPU per
    request and the mean batch it merged; ``latencies`` kept for pooling across rounds."""
    cpu_before, loop_before = server.cpu_seconds(), server.main_thread_cpu_seconds()
    merged_before = merged_batches(server.port)
    result = run_load("127.0.0.1", server.port, bodies, concurrency, check)
    summary = result.summary()
    merged = [b - a for a, b in zip(merged_before, merged_batches(server.port))]
    summary["mean_merged_batch"] = round(merged[0] / merged[1], 1) if merged[1] else None
    summary["server_cpu_ms_per_request"] = round(
        1000 * (server.cpu_seconds() - cpu_before) / len(bodies), 3)
    summary["event_loop_cpu_ms_per_request"] = round(
        1000 * (server.main_thread_cpu_seconds() - loop_before) / len(bodies), 3)
    summary["latencies"] = result.latencies
    return summary


def pooled(runs: list[dict]) -> dict:
    """Rounds of one load as one row (``pooled_rounds``), with the medians of the event loop's
    and the other threads' CPU per request and of the mean merged batch."""
    batches = [r["mean_merged_batch"] for r in runs if r["mean_merged_batch"] is not None]
    return {
        **pooled_rounds(runs),
        "event_loop_cpu_ms_per_request": round(float(np.median(
            [r["event_loop_cpu_ms_per_request"] for r in runs])), 3),
        "other_threads_cpu_ms_per_request": round(float(np.median(
            [r["server_cpu_ms_per_request"] - r["event_loop_cpu_ms_per_request"]
             for r in runs])), 3),
        "mean_merged_batch": round(float(np.median(batches)), 1) if batches else None,
    }


def serve_rates(model: str, loads: dict, instances: list[dict], concurrency: int, args
                ) -> tuple[dict, dict]:
    """Every load in ``loads`` (name -> (bodies, check, batching)) on its own server, all
    started at once, and the in-process runs, in ``args.rounds`` rounds whose order alternates
    (A B C D, D C B A, ...), so drift on the shared machine hits every row alike. Returns
    (server rows, in-process figures), each the medians over the rounds."""
    servers: dict[str, Server] = {}
    try:
        for key, (_, _, batching) in loads.items():
            servers[key] = Server(server_flags(model, batching, args))
        rss_before = {}
        for key, server in servers.items():
            bodies = loads[key][0]
            run_load("127.0.0.1", server.port, bodies[:concurrency * 2], concurrency)  # warm-up
            rss_before[key] = server.rss_bytes()
        runs: dict[str, list[dict]] = {key: [] for key in loads}
        local: dict[str, list] = {"alone": [], "grouped": [], "served": [], "served_batch": []}
        alone_set = instances[:max(concurrency, len(instances) // 3)]
        for r in range(args.rounds):
            for key in (list(loads) if r % 2 == 0 else list(loads)[::-1]):
                bodies, check, _ = loads[key]
                runs[key].append(measure_load(servers[key], bodies, concurrency, check))
            # In process: one at a time, in batches of ``concurrency``, and in batches of the
            # size the batching server merged on average in this round.
            served = max(1, round(runs["batching"][-1]["mean_merged_batch"] or 1))
            local["alone"].append(in_process_rate(model, alone_set, 1))
            local["grouped"].append(in_process_rate(model, instances, concurrency))
            local["served"].append(in_process_rate(model, instances, served))
            local["served_batch"].append(served)
        rows = {}
        for key, server in servers.items():
            rows[key] = pooled(runs[key])
            rows[key]["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
            rows[key]["rss_growth_mb"] = round((server.rss_bytes() - rss_before[key]) / 2**20, 2)
            rows[key]["exit_code"] = server.stop()
    finally:
        for server in servers.values():
            server.stop()

    def median(key: str, i: int) -> float:
        return float(np.median([x[i] for x in local[key]]))

    in_process = {"one_at_a_time_per_s": round(median("alone", 0), 1),
                  "one_at_a_time_cpu_ms": round(median("alone", 1), 3),
                  f"batches_of_{concurrency}_per_s": round(median("grouped", 0), 1),
                  f"batches_of_{concurrency}_cpu_ms": round(median("grouped", 1), 3),
                  "server_mean_batch": int(np.median(local["served_batch"])),
                  "server_mean_batch_cpu_ms": round(median("served", 1), 3)}
    return rows, in_process


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
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of every load, alternating order [default: 3; small: 1]")
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

    loads = {"batching": (bodies, check, True), "no_batching": (bodies, check, False),
             "batching_trimmed": (trimmed, check, True),
             "batching_v2_binary": (v2_binary_bodies(v2_path, instances, args.model),
                                    v2_binary_checker(instances), True)}
    args.rounds = args.rounds or (1 if args.small else 3)
    server, in_process = serve_rates(args.model, loads, instances, concurrency, args)
    batched, unbatched = server["batching"], server["no_batching"]
    grouped = in_process[f"batches_of_{concurrency}_per_s"]
    grouped_cpu = in_process[f"batches_of_{concurrency}_cpu_ms"]
    args.plan_rounds = args.plan_rounds or (2 if args.small else 20)
    plan = thread_plan(args.model, instances[:min(count, 1000)], concurrency, args)
    result = {
        "benchmark": "serving", "mode": "small" if args.small else "full",
        "command": "python benchmarks/serving.py" + (" --small" if args.small else ""),
        "model": args.model, "length": args.length, "requests": count,
        "concurrency": concurrency, "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.delay_ms, "rounds": args.rounds,
        "server": server, "in_process": in_process,
        "batching_speedup": round(batched["requests_per_s"] / unbatched["requests_per_s"], 2),
        "server_fraction_of_in_process": round(batched["requests_per_s"] / grouped, 3),
        "server_cpu_per_request_vs_in_process": round(
            batched["server_cpu_ms_per_request"] / grouped_cpu, 2),
        "server_cpu_per_request_vs_in_process_same_batch": round(
            batched["server_cpu_ms_per_request"] / in_process["server_mean_batch_cpu_ms"], 2),
        "other_threads_cpu_per_request_vs_in_process": round(
            batched["other_threads_cpu_ms_per_request"] / grouped_cpu, 2),
        "event_loop_cpu_ms_per_request_for_target": round(
            TARGETS["server_cpu_per_request_vs_in_process"] * grouped_cpu
            - batched["other_threads_cpu_ms_per_request"], 3),
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
             f"{r['max_queue_delay_ms']} ms; client and server share {r['cpu_count']} CPUs. "
             f"Every load has its own server, all up at once; {r.get('rounds', 1)} round(s) in "
             f"alternating order (A B C D, D C B A, ...): requests/s and CPU are medians over "
             f"the rounds, latencies pooled.", "",
             "| | requests/s | p50 ms | p99 ms | errors | CPU ms / request (event loop) | "
             "server RSS MB (growth) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, key in (("ntm serve, dynamic batching", "batching"),
                       ("ntm serve, no batching", "no_batching"),
                       ("ntm serve, batching, return_probabilities false", "batching_trimmed"),
                       ("ntm serve, batching, V2 binary tensors", "batching_v2_binary")):
        s = r["server"].get(key)
        if s is None:
            continue
        lines.append(f"| {label} | {s['requests_per_s']:,.0f} | {s['p50_ms']} | {s['p99_ms']} | "
                     f"{s['errors']} | {s.get('server_cpu_ms_per_request', '')}"
                     + (f" ({s['event_loop_cpu_ms_per_request']})"
                        if "event_loop_cpu_ms_per_request" in s else "") + " | "
                     f"{s['rss_mb']} ({s['rss_growth_mb']:+}) |")
    ip = r["in_process"]
    lines.append(f"| in process, one at a time | {ip['one_at_a_time_per_s']:,.0f} | | | | "
                 f"{ip.get('one_at_a_time_cpu_ms', '')} | |")
    lines.append(f"| in process, batches of {n} | {ip[f'batches_of_{n}_per_s']:,.0f} | | | | "
                 f"{ip.get(f'batches_of_{n}_cpu_ms', '')} | |")
    if "server_mean_batch" in ip:
        lines.append(f"| in process, batches of {ip['server_mean_batch']} (the server's mean "
                     f"merged batch) | | | | | {ip['server_mean_batch_cpu_ms']} | |")
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
    if "server_cpu_per_request_vs_in_process_same_batch" in r:
        lines += ["", f"Mean merged batch with batching: "
                      f"{r['server']['batching'].get('mean_merged_batch')} sequences; the "
                      f"server's CPU per request is "
                      f"{r['server_cpu_per_request_vs_in_process_same_batch']}x the in-process "
                      f"CPU per request at batches of that size (not a target: the model's "
                      f"cost at the batches the load lets the server form, against what the "
                      f"server adds)."]
    if "other_threads_cpu_per_request_vs_in_process" in r:
        b, ip = r["server"]["batching"], r["in_process"]
        same_batch = b["other_threads_cpu_ms_per_request"] / ip["server_mean_batch_cpu_ms"]
        lines += ["", f"Outside its event loop (the batcher's threads: merging and the "
                      f"onnxruntime runs) the batching server spent "
                      f"{b['other_threads_cpu_ms_per_request']} ms of CPU per request: "
                      f"{r['other_threads_cpu_per_request_vs_in_process']}x the in-process CPU "
                      f"per request at batches of {n} and {same_batch:.2f}x at batches of "
                      f"{ip['server_mean_batch']} (in process that CPU also encodes and "
                      f"decodes; in the server the model shares the cores with the clients "
                      f"and the event loop). For the CPU target the event loop could spend at "
                      f"most {r['event_loop_cpu_ms_per_request_for_target']} ms per request; "
                      f"it spent {b['event_loop_cpu_ms_per_request']}."]
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
