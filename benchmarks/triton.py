"""Benchmark: ``ntm serve`` beside a real Triton Inference Server on the same model.

The bundled copy model, exported with ``ntm export --format triton`` (its tuned config: two
instances, one onnxruntime thread each), runs on the Triton 2.51 of ``../shared/triton``; the
same model runs on ``ntm serve --grpc-port``. The same length-20 copy requests (one sequence
each, V2 binary tensors asking for the probabilities only) go to each server over HTTP and over
gRPC from N closed-loop clients (``benchmarks/loadgen``: pre-encoded requests, so the client
costs the same whichever server answers). Every answer is checked against its input.

Each round runs the four loads in a shuffled order; figures are medians over the rounds (the
machine drifts 30-50% from minute to minute: only rows measured side by side compare). The
servers' CPU seconds per request (user + system of the server process over the load) are beside
each row: client and servers share the machine's cores.

    python benchmarks/triton.py                    # 32 clients, 3000 requests a load, 5 rounds
    python benchmarks/triton.py --small            # seconds

Needs the [train] extra (the export), the [grpc] extra, and ``../shared/triton`` (or
``--triton-dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.loadgen import (Server, TritonServer, free_port, http_post,  # noqa: E402
                                pooled_rounds, run_grpc_load, run_load, setup_triton)
from benchmarks.results_io import write_results  # noqa: E402

MODEL = "copy"
INFER = "/inference.GRPCInferenceService/ModelInfer"


def export_repository(out: Path) -> Path:
    """The bundled copy model as a Triton repository entry ``copy`` (needs TensorFlow)."""
    from ntm.export.exporter import export_run
    from ntm.export.recover import recover
    from ntm.serving.models import bundled_models

    recover(bundled_models()[MODEL], out / "run")
    export_run(out / "run", "triton", out=out / "repository", model_name=MODEL)
    return out / "repository"


def copy_inputs(count: int, length: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = np.zeros((1, 2 * length + 1, 9), np.float32)
        x[0, :length, :8] = rng.integers(0, 2, (length, 8))
        x[0, length, 8] = 1.0
        out.append(x)
    return out


def http_bodies(inputs: list[np.ndarray]) -> list[bytes]:
    """V2 binary-tensor POSTs asking for the probabilities in binary (tritonclient's way)."""
    bodies = []
    for x in inputs:
        head = json.dumps({
            "inputs": [{"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }).encode()
        bodies.append(http_post(f"/v2/models/{MODEL}/infer", head + x.tobytes(),
                                headers={"Inference-Header-Content-Length": len(head)}))
    return bodies


def grpc_bodies(inputs: list[np.ndarray]) -> list[bytes]:
    """Serialized ModelInfer requests with raw inputs, asking for the probabilities."""
    from tritonclient.grpc import service_pb2 as pb

    bodies = []
    for x in inputs:
        request = pb.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="inputs", datatype="FP32", shape=x.shape)
        request.outputs.add(name="probabilities")
        request.raw_input_contents.append(x.tobytes())
        bodies.append(request.SerializeToString())
    return bodies


def copied(x: np.ndarray, probabilities: bytes) -> bool:
    length = (x.shape[1] - 1) // 2
    p = np.frombuffer(probabilities, np.float32).reshape(x.shape[1], 8)
    return bool(((p[length + 1:] > 0.5) == (x[0, :length, :8] > 0.5)).all())


def http_checker(inputs):
    def check(i: int, body: bytes) -> bool:
        return copied(inputs[i], body[-inputs[i].shape[1] * 8 * 4:])
    return check


def grpc_checker(inputs):
    from tritonclient.grpc import service_pb2 as pb

    def check(i: int, body: bytes) -> bool:
        response = pb.ModelInferResponse.FromString(body)
        return copied(inputs[i], response.raw_output_contents[0])
    return check


def measure(load, cpu_seconds, count: int) -> dict:
    before = cpu_seconds()
    result = load()
    summary = result.summary()
    summary["server_cpu_ms_per_request"] = round(1000 * (cpu_seconds() - before) / count, 3)
    summary["latencies"] = result.latencies
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per load")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--length", type=int, default=20, help="copy length (2L+1 steps)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--triton-dir", type=Path, default=HERE.parent.parent / "shared" / "triton")
    parser.add_argument("--serve-args", default="",
                        help="extra ntm serve flags, e.g. '--max-queue-delay-ms 1'")
    parser.add_argument("--small", action="store_true", help="a quick run (tests)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.small:
        args.requests, args.rounds, args.concurrency = 64, 1, 8

    binary, backends = setup_triton(args.triton_dir)
    work = Path(tempfile.mkdtemp(prefix="ntm-triton-bench-"))
    repository = export_repository(work)
    inputs = copy_inputs(args.requests, args.length, 0)
    bodies = {"http": http_bodies(inputs), "grpc": grpc_bodies(inputs)}
    checks = {"http": http_checker(inputs), "grpc": grpc_checker(inputs)}
    grpc_port = free_port()
    serve_flags = ["--model", MODEL, "--grpc-port", str(grpc_port), *args.serve_args.split()]
    runs: dict[str, list[dict]] = {}
    with Server(serve_flags) as serve, \
            TritonServer(binary, backends, repository, work / "tritonserver.log") as triton:
        if not any(m["name"] == MODEL and m.get("state") == "READY" for m in triton.index):
            raise SystemExit(f"Triton did not load {MODEL}: {triton.index}")
        def load(protocol: str, port: int):
            """A load of the first ``n`` requests on ``port`` over ``protocol``."""
            if protocol == "http":
                return lambda n: run_load("127.0.0.1", port, bodies["http"][:n],
                                          args.concurrency, checks["http"])
            return lambda n: run_grpc_load(f"127.0.0.1:{port}", INFER, bodies["grpc"][:n],
                                           args.concurrency, checks["grpc"])

        targets = {
            "ntm serve, HTTP binary": (load("http", serve.port), serve.cpu_seconds),
            "ntm serve, gRPC": (load("grpc", grpc_port), serve.cpu_seconds),
            "Triton, HTTP binary": (load("http", triton.http_port), triton.cpu_seconds),
            "Triton, gRPC": (load("grpc", triton.grpc_port), triton.cpu_seconds),
        }
        for run, _ in targets.values():  # every path warmed up once, unmeasured
            run(4 * args.concurrency)
        order = list(targets)
        rng = random.Random(0)
        for _ in range(args.rounds):
            rng.shuffle(order)
            for name in order:
                run, cpu = targets[name]
                runs.setdefault(name, []).append(
                    measure(lambda: run(args.requests), cpu, args.requests))
    rows = {name: pooled_rounds(r) for name, r in runs.items()}
    ratios = {
        "http_binary": round(rows["ntm serve, HTTP binary"]["requests_per_s"]
                             / rows["Triton, HTTP binary"]["requests_per_s"], 3),
        "grpc": round(rows["ntm serve, gRPC"]["requests_per_s"]
                      / rows["Triton, gRPC"]["requests_per_s"], 3),
    }
    result = {"config": {"requests": args.requests, "concurrency": args.concurrency,
                         "length": args.length, "rounds": args.rounds,
                         "serve_args": args.serve_args, "cpus": os.cpu_count()},
              "rows": rows, "ntm_serve_over_triton": ratios}
    write_results(args.out, "triton", args.small, result, markdown(result))


def markdown(r: dict) -> str:
    c = r["config"]
    lines = [
        "# ntm serve beside Triton 2.51 (same model, same requests)",
        "",
        f"`python benchmarks/triton.py` — bundled copy model, copy length {c['length']} "
        f"({2 * c['length'] + 1} steps), {c['concurrency']} closed-loop clients, "
        f"{c['requests']} requests per load, {c['rounds']} rounds in shuffled order, "
        f"{c['cpus']} CPUs shared by clients and servers"
        + (f", ntm serve {c['serve_args']}" if c["serve_args"] else "") + ".",
        "",
        "| server, protocol | requests/s (median) | each round | p50 ms | p99 ms | "
        "server CPU ms/request | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in r["rows"].items():
        lines.append(f"| {name} | {row['requests_per_s']} | "
                     f"{', '.join(str(x) for x in row['requests_per_s_each'])} | "
                     f"{row['p50_ms']} | {row['p99_ms']} | {row['server_cpu_ms_per_request']} | "
                     f"{row['errors']} |")
    ratios = r["ntm_serve_over_triton"]
    lines += ["", f"ntm serve / Triton requests/s: HTTP binary {ratios['http_binary']}x, "
                  f"gRPC {ratios['grpc']}x.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
