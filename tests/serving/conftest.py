"""Fixtures for the serving tests: bundled models, tiny exports, real server processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def bundled():
    from ntm.serving.models import bundled_models

    models = bundled_models()
    assert set(models) == {"copy", "ngrams", "priority-sort", "recall", "repeat-copy"}, \
        f"bundled models: {models}"
    return models


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """A tiny copy model exported dynamic and fixed (9 steps); needs the [train] extra."""
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from ntm.training.config import TrainConfig
    from ntm.export.exporter import export_run
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    root = tmp_path_factory.mktemp("tiny")
    tc = TrainConfig(task="copy", max_length=4, batch_size=4, steps=5, eval_every=5,
                     eval_size=8, checkpoint_every=5, log_every=5, target_error=-1)
    Trainer(Run.create(root / "run", tc, memory_size=16, memory_width=6,
                       controller_size=16)).run()
    dynamic = export_run(root / "run", "onnx", out=root / "dynamic.onnx").path
    fixed = export_run(root / "run", "onnx", length=9, out=root / "fixed.onnx").path
    return {"dynamic": dynamic, "fixed": fixed}


@pytest.fixture(scope="session")
def baseline_exports(baseline_run, tmp_path_factory):
    """The tiny LSTM baseline (``baseline_run``) exported dynamic ("dynamic") and stateful
    ("stateful"); needs the [train] extra."""
    from ntm.export.exporter import export_run

    root = tmp_path_factory.mktemp("baseline-exports")
    return {"dynamic": export_run(baseline_run, "onnx", out=root / "dynamic.onnx").path,
            "stateful": export_run(baseline_run, "onnx", out=root / "stateful.onnx",
                                   stateful=True).path}


def wait_until(condition, what: str, timeout: float = 60):
    """Poll ``condition()`` until it returns something true, and return that; fail naming
    ``what`` after ``timeout`` seconds. Tests wait on what they can observe, never on a fixed
    sleep: the deadline is generous because CI shares the machine, the pause only paces."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.02)
    return value


def metric(text: str, name: str, labels: str) -> float:
    """One sample of a Prometheus text exposition (labels in sorted order), 0 when absent."""
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


class HeldBackPosts:
    """POST each of ``bodies`` to ``url`` from a thread of its own, sending the headers and the
    first bytes of every body at once and the rest only on ``release()``: until then the server
    holds all of them in flight (``ntm_requests_in_flight``), for as long as a test needs."""

    def __init__(self, url: str, bodies: list[bytes]):
        self.results: list = [None] * len(bodies)
        self._go = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(i, url, body), daemon=True)
                         for i, body in enumerate(bodies)]
        for thread in self._threads:
            thread.start()

    def _post(self, i: int, url: str, body: bytes) -> None:
        def chunks():
            yield body[:10]
            self._go.wait(120)
            yield body[10:]

        try:
            self.results[i] = httpx.post(url, content=chunks(), timeout=120,
                                         headers={"Content-Type": "application/json"})
        except httpx.HTTPError as err:
            self.results[i] = err

    def release(self) -> list:
        """Send the rest of every body; the responses (or transport errors), in order."""
        self._go.set()
        for thread in self._threads:
            thread.join(120)
        return self.results


class ServerProcess:
    """``ntm serve`` as a real process on an ephemeral loopback port."""

    def __init__(self, args: list[str], env: dict | None = None, cwd: Path | None = None):
        cmd = [sys.executable, "-m", "ntm.cli.main", "serve", "--host", "127.0.0.1", "--port", "0",
               *args]
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,  # [the tests' cwd]
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if match:
                # keep reading stderr (the access log): a full pipe would block the server
                threading.Thread(target=self._drain, daemon=True).start()
                self.port = int(match.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                self._wait_ready()
                return
        self.proc.kill()
        raise RuntimeError("server did not start:\n" + "".join(self.lines)
                           + self.proc.stderr.read())

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def _wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n"
                                   + "".join(self.lines) + self.proc.stderr.read())
            try:
                return httpx.get(self.url + "/v2/health/ready", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, "the server to be ready")

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=30).text

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def start_server():
    started: list[ServerProcess] = []

    def start(*args: str, env: dict | None = None) -> ServerProcess:
        server = ServerProcess(list(args), env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
