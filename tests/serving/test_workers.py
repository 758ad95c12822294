"""``ntm serve --workers N``: N processes share one port; all answer; SIGTERM stops them all."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_for_workers(pid: int, count: int, timeout: float = 60) -> list[int]:
    """The worker processes (children of the supervisor that themselves answer)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        kids = [k for k in children(pid) if Path(f"/proc/{k}").exists()]
        # spawn starts a resource tracker too; workers are the children that are not it
        workers = [k for k in kids if "resource_tracker" not in
                   Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace")]
        if len(workers) >= count:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"expected {count} workers, found {children(pid)}")


def test_two_workers_answer_and_stop_together(start_server, bundled):
    server = start_server("--model", "copy", "--workers", "2")
    assert any("2 worker processes" in line for line in server.lines)
    workers = wait_for_workers(server.proc.pid, 2)
    rng = np.random.default_rng(0)
    requests = [{"sequence": rng.integers(0, 2, (int(rng.integers(1, 15)), 8)).tolist()}
                for _ in range(40)]

    def call(request):
        with httpx.Client() as client:  # a new connection each: the kernel spreads them
            return client.post(f"{server.url}/v1/models/copy:predict",
                               json={"instances": [request]}, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, requests))
    for request, r in zip(requests, responses):
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["output"] == request["sequence"]
    # a sequence's requests could reach another process: refused, never half-answered
    part = httpx.post(f"{server.url}/v2/models/copy/infer", timeout=30, json={
        "inputs": [{"name": "inputs", "shape": [1, 2, 9], "datatype": "FP32", "data": [0] * 18}],
        "parameters": {"sequence_id": 1, "sequence_start": True}})
    assert part.status_code == 400 and "--workers" in part.json()["error"]
    assert server.stop() == 0
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
