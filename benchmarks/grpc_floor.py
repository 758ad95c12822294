"""Benchmark: the floor under ``ntm serve``'s gRPC: what a Python gRPC server costs per request
before any model runs, beside the model's own cost and the real service.

The same load as ``benchmarks/triton.py`` (its requests, load generator and 32 closed-loop
clients on one HTTP/2 channel, length-20 copies as raw tensors), against:

- **a bare grpc.aio server**: the same generated ``inference.GRPCInferenceService`` on uvloop,
  as ``ntm serve`` runs it, answering every ModelInfer with one fixed response (the request is
  parsed, nothing else): the least any Python service of this protocol costs;
- **ntm serve --grpc-port** on the bundled copy model, standard engine: the real service.

Beside them, the model alone: onnxruntime's time per sequence for a batch of 16 length-20
copies on one thread (the batches ``ntm serve`` forms under this load), the same in any server.
The loads alternate round by round; medians. Server CPU per request is the server process's
user + system time over the load.

    python benchmarks/grpc_floor.py            # 3000 requests a load, 5 rounds
    python benchmarks/grpc_floor.py --small    # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.fused_kernel import one_thread_session  # noqa: E402
from benchmarks.loadgen import (Server, free_port, pooled_rounds,  # noqa: E402
                                process_cpu_seconds, run_grpc_load)
from benchmarks.results_io import write_results  # noqa: E402
from benchmarks.triton import INFER, MODEL, copy_inputs, grpc_bodies, measure  # noqa: E402

BATCH = 16  # sequences per model call in the model-alone row


def serve_bare(port: int) -> None:
    """Run the bare server on 127.0.0.1:``port`` until killed (this file's --bare-server)."""
    import grpc
    import uvloop
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    answer = pb.ModelInferResponse(model_name=MODEL, model_version="1")
    answer.outputs.add(name="probabilities", datatype="FP32", shape=[1, 41, 8])
    answer.raw_output_contents.append(np.zeros((1, 41, 8), np.float32).tobytes())

    class Fixed(pb_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request, context):
            return answer

    async def main() -> None:
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Fixed(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    uvloop.install()
    asyncio.run(main())


class BareServer:
    """The bare server in a child process (a context manager)."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "--bare-server", str(self.port)],
                                     stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError("the bare gRPC server did not start")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def model_ms_per_sequence(rounds: int) -> float:
    """onnxruntime's time per sequence, one thread, BATCH length-20 copies per call (median)."""
    from ntm.serving.models import bundled_models

    session = one_thread_session(bundled_models()[MODEL])
    x = np.concatenate(copy_inputs(BATCH, 20, 1))
    feeds = {"inputs": x, "memory_size": np.array([128], np.int32)}
    session.run(["probabilities"], feeds)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        session.run(["probabilities"], feeds)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times)) / BATCH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per load")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="a quick run (tests)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        return serve_bare(args.bare_server)
    if args.small:
        args.requests, args.rounds = 200, 1
    inputs = copy_inputs(args.requests, 20, 0)
    bodies = grpc_bodies(inputs)
    runs: dict[str, list[dict]] = {}
    grpc_port = free_port()
    with BareServer() as bare, Server(["--model", MODEL, "--engine", "standard",
                                       "--grpc-port", str(grpc_port)]) as serve:
        targets = {"bare grpc.aio server (fixed answer)": (bare.port, bare.cpu_seconds),
                   "ntm serve, gRPC (standard engine)": (grpc_port, serve.cpu_seconds)}
        for port, _ in targets.values():  # warm up, unmeasured
            run_grpc_load(f"127.0.0.1:{port}", INFER, bodies[:4 * args.concurrency],
                          args.concurrency)
        for _ in range(args.rounds):
            for name, (port, cpu) in targets.items():
                runs.setdefault(name, []).append(measure(
                    lambda: run_grpc_load(f"127.0.0.1:{port}", INFER, bodies,  # noqa: B023
                                          args.concurrency), cpu, args.requests))
    rows = {name: pooled_rounds(r) for name, r in runs.items()}
    result = {"config": {"requests": args.requests, "concurrency": args.concurrency,
                         "rounds": args.rounds, "cpus": os.cpu_count(), "batch": BATCH},
              "rows": rows, "model_ms_per_sequence": model_ms_per_sequence(50 if args.small
                                                                             else 500),
              "triton": triton_grpc_row()}
    write_results(args.out, "grpc_floor", args.small, result, markdown(result))


def triton_grpc_row() -> dict | None:
    """Triton's gRPC row on the standard model from the latest ``benchmarks/triton.py`` results
    (another run: for scale, not side by side), when there is one."""
    path = HERE / "results" / "triton.json"
    if not path.is_file():
        return None
    rows = json.loads(path.read_text()).get("rows", {})
    return rows.get("Triton (standard), gRPC")


def markdown(r: dict) -> str:
    c = r["config"]
    lines = ["# The floor under ntm serve's gRPC", "",
             f"`python benchmarks/grpc_floor.py` — {c['concurrency']} closed-loop clients on one "
             f"channel, {c['requests']} length-20 copy requests per load, {c['rounds']} rounds "
             f"alternating, {c['cpus']} CPUs shared by clients and server.", "",
             "| server | requests/s (median) | p50 ms | server CPU ms/request | errors |",
             "| --- | --- | --- | --- | --- |"]
    for name, row in r["rows"].items():
        lines.append(f"| {name} | {row['requests_per_s']} | {row['p50_ms']} | "
                     f"{row['server_cpu_ms_per_request']} | {row['errors']} |")
    lines += ["", f"The model alone (onnxruntime, one thread, batches of {c['batch']}): "
                  f"{r['model_ms_per_sequence']:.3f} ms CPU per sequence."]
    if r.get("triton"):
        t = r["triton"]
        lines += ["", f"Triton 2.51, gRPC, same model and load (`benchmarks/results/triton.md`, "
                      f"another run): {t['requests_per_s']} requests/s at "
                      f"{t['server_cpu_ms_per_request']} ms server CPU per request."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
