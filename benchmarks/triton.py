"""Benchmark: ``ntm serve`` beside a real Triton Inference Server on the same model.

The bundled copy model, exported with ``ntm export --format triton`` (its tuned config: two
instances, one onnxruntime thread each), runs on the Triton 2.51 of ``../shared/triton``; the
same model runs on ``ntm serve --grpc-port``. Both engines, each on both servers: the standard
ONNX model and the fused kernel (``--kernel fused``, ``ntm serve --engine fused``). The same length-20 copy requests (one sequence
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
import contextlib
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


ENTRIES = {"standard": MODEL, "fused": f"{MODEL}_fused"}  # Triton's entry of each engine


def export_repository(out: Path, engines: list[str]) -> Path:
    """The bundled copy model as Triton repository entries: ``copy`` (standard operators) and,
    for the fused engine, ``copy_fused`` (``--kernel fused``) (needs TensorFlow)."""
    from ntm.export.exporter import export_run
    from ntm.export.recover import recover
    from ntm.serving.models import bundled_models

    recover(bundled_models()[MODEL], out / "run")
    for engine in engines:
        export_run(out / "run", "triton", out=out / "repository", model_name=ENTRIES[engine],
                   kernel=engine)
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


def http_bodies(inputs: list[np.ndarray], model: str = MODEL) -> list[bytes]:
    """V2 binary-tensor POSTs asking for the probabilities in binary (tritonclient's way)."""
    bodies = []
    for x in inputs:
        head = json.dumps({
            "inputs": [{"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }).encode()
        bodies.append(http_post(f"/v2/models/{model}/infer", head + x.tobytes(),
                                headers={"Inference-Header-Content-Length": len(head)}))
    return bodies


def grpc_bodies(inputs: list[np.ndarray], model: str = MODEL) -> list[bytes]:
    """Serialized ModelInfer requests with raw inputs, asking for the probabilities."""
    from tritonclient.grpc import service_pb2 as pb

    bodies = []
    for x in inputs:
        request = pb.ModelInferRequest(model_name=model)
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
    parser.add_argument("--engines", default="standard,fused",
                        help="the engines to compare, each on both servers (fused needs "
                             "`ntm build-kernel`)")
    parser.add_argument("--small", action="store_true", help="a quick run (tests)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.small:
        args.requests, args.rounds, args.concurrency = 64, 1, 8

    from ntm.contract.kernel_library import find_library

    engines = [e for e in args.engines.split(",") if e]
    if "fused" in engines and find_library() is None:
        raise SystemExit("--engines fused needs the kernel: run `ntm build-kernel`")
    binary, backends = setup_triton(args.triton_dir)
    work = Path(tempfile.mkdtemp(prefix="ntm-triton-bench-"))
    repository = export_repository(work, engines)
    inputs = copy_inputs(args.requests, args.length, 0)
    checks = {"http": http_checker(inputs), "grpc": grpc_checker(inputs)}
    runs: dict[str, list[dict]] = {}
    with contextlib.ExitStack() as stack:
        triton = stack.enter_context(
            TritonServer(binary, backends, repository, work / "tritonserver.log"))
        ready = {m["name"] for m in triton.index if m.get("state") == "READY"}
        if not {ENTRIES[e] for e in engines} <= ready:
            raise SystemExit(f"Triton did not load every entry: {triton.index}")

        def load(protocol: str, port: int, model: str):
            """A load of the first ``n`` requests to ``model`` on ``port`` over ``protocol``."""
            if protocol == "http":
                bodies = http_bodies(inputs, model)
                return lambda n: run_load("127.0.0.1", port, bodies[:n], args.concurrency,
                                          checks["http"])
            bodies = grpc_bodies(inputs, model)
            return lambda n: run_grpc_load(f"127.0.0.1:{port}", INFER, bodies[:n],
                                           args.concurrency, checks["grpc"])

        targets = {}
        for engine in engines:
            grpc_port = free_port()
            serve = stack.enter_context(Server(["--model", MODEL, "--engine", engine,
                                                "--grpc-port", str(grpc_port),
                                                *args.serve_args.split()]))
            entry = ENTRIES[engine]
            targets.update({
                f"ntm serve ({engine}), HTTP binary": (load("http", serve.port, MODEL),
                                                       serve.cpu_seconds),
                f"ntm serve ({engine}), gRPC": (load("grpc", grpc_port, MODEL),
                                                serve.cpu_seconds),
                f"Triton ({engine}), HTTP binary": (load("http", triton.http_port, entry),
                                                    triton.cpu_seconds),
                f"Triton ({engine}), gRPC": (load("grpc", triton.grpc_port, entry),
                                             triton.cpu_seconds),
            })
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

    def rate(name: str) -> float:
        return rows[name]["requests_per_s"]

    protocols = {"http_binary": "HTTP binary", "grpc": "gRPC"}
    ratios = {f"{key} ({e})": round(rate(f"ntm serve ({e}), {p}") / rate(f"Triton ({e}), {p}"), 3)
              for e in engines for key, p in protocols.items()}
    fused_over_standard = ({key: round(rate(f"ntm serve (fused), {p}")
                                       / rate(f"ntm serve (standard), {p}"), 3)
                            for key, p in protocols.items()}
                           if {"fused", "standard"} <= set(engines) else None)
    result = {"config": {"requests": args.requests, "concurrency": args.concurrency,
                         "length": args.length, "rounds": args.rounds, "engines": engines,
                         "serve_args": args.serve_args, "cpus": os.cpu_count()},
              "rows": rows, "ntm_serve_over_triton": ratios,
              "ntm_serve_fused_over_standard": fused_over_standard}
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
    lines += ["", "ntm serve / Triton requests/s, same engine on both: "
              + ", ".join(f"{k} {v}x" for k, v in ratios.items()) + "."]
    if r.get("ntm_serve_fused_over_standard"):
        f = r["ntm_serve_fused_over_standard"]
        lines += ["", f"ntm serve, fused engine / standard engine requests/s: HTTP binary "
                      f"{f['http_binary']}x, gRPC {f['grpc']}x."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
