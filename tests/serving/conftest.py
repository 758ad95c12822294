"""Fixtures for the serving tests: bundled models, tiny exports, real server processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def bundled():
    from serving.models import bundled_models

    models = bundled_models()
    assert set(models) == {"copy", "recall", "repeat-copy"}, f"bundled models: {models}"
    return models


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """A tiny copy model exported dynamic and fixed (9 steps); needs the [train] extra."""
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from export.exporter import export_run
    from ntm.config import ModelConfig, TrainConfig
    from ntm.tasks import get_task
    from ntm.trainer import Trainer, task_for

    root = tmp_path_factory.mktemp("tiny")
    tc = TrainConfig(task="copy", max_length=4, batch_size=4, steps=5, eval_every=5,
                     eval_size=8, checkpoint_every=5, log_every=5, target_error=-1)
    task = task_for(tc, get_task)
    mc = ModelConfig(input_size=task.input_size, output_size=task.output_size, memory_size=16,
                     memory_width=6, controller_size=16)
    Trainer(root / "run", mc, tc, task).run()
    dynamic = export_run(root / "run", "onnx", out=root / "dynamic.onnx").path
    fixed = export_run(root / "run", "onnx", length=9, out=root / "fixed.onnx").path
    return {"dynamic": dynamic, "fixed": fixed}


class ServerProcess:
    """``ntm serve`` as a real process on an ephemeral loopback port."""

    def __init__(self, args: list[str], env: dict | None = None):
        cmd = [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", "0",
               *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE,
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
                self.port = int(match.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                self._wait_ready()
                return
        self.proc.kill()
        raise RuntimeError("server did not start:\n" + "".join(self.lines)
                           + self.proc.stderr.read())

    def _wait_ready(self) -> None:
        for _ in range(200):
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server never became ready")

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
