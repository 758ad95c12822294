"""A bounded closed-loop HTTP load generator, and ``ntm serve`` as a child process.

Closed loop: N clients each send a request, wait for its answer, and send the next, until a
fixed number of requests has been sent. The client side is plain asyncio streams over HTTP/1.1
keep-alive with pre-encoded bodies, so it costs the CPU (shared with the server on one machine)
as little as a Python client can.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import tempfile
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: dict[str, int] = field(default_factory=dict)  # status or exception name -> count

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> dict:
        lat = np.array(self.latencies) * 1e3 if self.latencies else np.array([np.nan])
        return {"requests": self.requests, "seconds": round(self.seconds, 3),
                "requests_per_s": round(self.requests / self.seconds, 1),
                "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "errors": self.error_count, "error_kinds": dict(self.errors)}


async def _client(host: str, port: int, requests: list[bytes], counter: list[int],
                  result: LoadResult, check) -> None:
    reader = writer = None
    while True:
        i = counter[0]
        if i >= len(requests):
            break
        counter[0] += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            writer.write(requests[i])
            await writer.drain()
            status, body = await _read_response(reader)
            elapsed = time.perf_counter() - start
            if status == 200 and (check is None or check(i, body)):
                result.latencies.append(elapsed)
            else:
                key = str(status) if status != 200 else "wrong answer"
                result.errors[key] = result.errors.get(key, 0) + 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            result.errors[type(err).__name__] = result.errors.get(type(err).__name__, 0) + 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return status, body


def http_post(path: str, body: bytes, host: str = "127.0.0.1", headers: dict | None = None) -> bytes:
    """One pre-encoded HTTP/1.1 keep-alive POST."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def run_load(host: str, port: int, requests: list[bytes], concurrency: int,
             check=None) -> LoadResult:
    """Send every request in ``requests`` with ``concurrency`` closed-loop clients."""
    async def main() -> LoadResult:
        result = LoadResult(len(requests), 0.0)
        counter = [0]
        start = time.perf_counter()
        await asyncio.gather(*[_client(host, port, requests, counter, result, check)
                               for _ in range(concurrency)])
        result.seconds = time.perf_counter() - start
        return result

    return asyncio.run(main())


class Server:
    """``ntm serve`` in a child process on an ephemeral loopback port (a context manager)."""

    def __init__(self, args: list[str], timeout: float = 60.0):
        cmd = [sys.executable, "-m", "ntm.cli.main", "serve", "--host", "127.0.0.1", "--port", "0",
               *args]
        # Its output (the access log too) goes to a file, as a deployed server's would: read
        # from a pipe here, it would take CPU from the load generator in this very process.
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ntm-serve-", suffix=".log")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.port = self._wait_for_port(timeout)

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = Path(self.log.name).read_text(errors="replace")
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("ntm serve did not start:\n" + "\n".join(
            Path(self.log.name).read_text(errors="replace").splitlines()[-20:]))

    def rss_bytes(self) -> int:
        """Resident set size of the server process (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used (Linux /proc; its threads
        included)."""
        return process_cpu_seconds(self.proc.pid)

    def main_thread_cpu_seconds(self) -> float:
        """User + system CPU seconds of the server's main thread alone: its event loop (the
        other threads run the model and its batches)."""
        return _stat_cpu_seconds(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _stat_cpu_seconds(path: str) -> float:
    """User + system CPU seconds from a Linux /proc stat file (a process's or a thread's)."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_grpc_load(address: str, method: str, requests: list[bytes], concurrency: int,
                  check=None) -> LoadResult:
    """``run_load`` over gRPC: every serialized request in ``requests`` sent to ``method`` (e.g.
    ``/inference.GRPCInferenceService/ModelInfer``) by ``concurrency`` closed-loop clients on
    one HTTP/2 channel; ``check(i, response bytes)``."""
    import grpc

    async def main() -> LoadResult:
        result = LoadResult(len(requests), 0.0)
        counter = [0]
        async with grpc.aio.insecure_channel(address, options=[
                ("grpc.max_receive_message_length", -1)]) as channel:
            call = channel.unary_unary(method)  # bytes in, bytes out

            async def client() -> None:
                while counter[0] < len(requests):
                    i = counter[0]
                    counter[0] += 1
                    start = time.perf_counter()
                    try:
                        body = await call(requests[i])
                    except grpc.aio.AioRpcError as err:
                        key = err.code().name
                        result.errors[key] = result.errors.get(key, 0) + 1
                        continue
                    elapsed = time.perf_counter() - start
                    if check is None or check(i, body):
                        result.latencies.append(elapsed)
                    else:
                        result.errors["wrong answer"] = result.errors.get("wrong answer", 0) + 1

            start = time.perf_counter()
            await asyncio.gather(*[client() for _ in range(concurrency)])
            result.seconds = time.perf_counter() - start
        return result

    return asyncio.run(main())


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and the processes it started (threads
    included): ``ntm serve --workers N`` answers from child processes."""
    total = _stat_cpu_seconds(f"/proc/{pid}/stat")
    for child in process_tree(pid)[1:]:
        try:
            total += _stat_cpu_seconds(f"/proc/{child}/stat")
        except OSError:
            pass  # it ended meanwhile
    return total


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants alive now (from /proc's parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the field after the command's closing parenthesis: state, then the parent id
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def free_port() -> int:
    """A TCP port free on loopback now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_triton(where: Path, base: Path = Path("/tmp")) -> tuple[Path, Path]:
    """(the tritonserver binary, its backend directory) from ``where``/setup.sh (the
    ``../shared/triton`` folder), installed under ``base`` (the script's own default, /tmp).
    RuntimeError with the script's last words when it fails."""
    done = subprocess.run(["bash", str(where / "setup.sh"), str(base)], capture_output=True,
                          text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"{where}/setup.sh failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1]), base / "triton-backends"


class TritonServer:
    """tritonserver on loopback over ``repository``, its output in the file ``log`` (a context
    manager). Started with strict config and every address on loopback; ready when every model
    has left loading: ``index`` is Triton's repository index then (READY, or UNAVAILABLE with its
    reason). ``verbose`` logs the schedulers' decisions (sequence expiry among them)."""

    def __init__(self, binary: str | Path, backends: str | Path, repository: Path, log: Path,
                 verbose: bool = False, timeout: float = 180.0):
        import json
        import urllib.request

        self.http_port, self.grpc_port = free_port(), free_port()
        self.http, self.grpc = f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.grpc_port}"
        self.log = Path(log)
        self.proc = subprocess.Popen(
            [str(binary), "--model-repository", str(repository),
             "--backend-directory", str(backends),
             "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
             "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
             "--allow-metrics", "false", "--strict-model-config", "true",
             "--exit-on-error", "false", *(["--log-verbose", "1"] if verbose else [])],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                request = urllib.request.Request(f"http://{self.http}/v2/repository/index",
                                                 data=b"", method="POST")
                models = json.loads(urllib.request.urlopen(request, timeout=5).read())
            except (OSError, ValueError):
                models = []
            if models and all(m.get("state") in ("READY", "UNAVAILABLE") for m in models):
                self.index = models
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("tritonserver did not load its repository:\n"
                           + self.log_text()[-3000:])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> "TritonServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def pooled_rounds(runs: list[dict]) -> dict:
    """Rounds of one load as one row: the median of requests/s and of the server's CPU per
    request, latency percentiles over every request of every round, errors summed."""
    latencies = np.array([x for r in runs for x in r["latencies"]]) * 1e3
    return {
        "rounds": len(runs),
        "requests_per_s": round(float(np.median([r["requests_per_s"] for r in runs])), 1),
        "requests_per_s_each": [r["requests_per_s"] for r in runs],
        "p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None,
        "errors": sum(r["errors"] for r in runs),
        "error_kinds": {kind: sum(r["error_kinds"].get(kind, 0) for r in runs)
                        for kind in sorted({k for r in runs for k in r["error_kinds"]})},
        "server_cpu_ms_per_request": round(float(np.median(
            [r["server_cpu_ms_per_request"] for r in runs])), 3),
    }
