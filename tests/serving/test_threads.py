"""Threads planned per batch size: ``ThreadBudget`` grants a large run the idle threads, the
runtime runs it on its large-batch session, and the server reports which it used."""

import threading

import httpx
import numpy as np
import pytest

from ntm.serving.runtime import ModelRuntime
from ntm.serving.settings import RuntimeOptions
from ntm.serving.threads import ThreadBudget

from .conftest import metric


def test_a_run_takes_the_idle_threads_it_wants_and_gives_them_back():
    budget = ThreadBudget(3)
    with budget.run(2) as held:
        assert held == 2 and budget.free == 1
        with budget.run(4) as more:  # never waits for extra threads: takes what is idle
            assert more == 1 and budget.free == 0
    assert budget.free == 3
    with budget.run(0) as held:  # every run holds at least one
        assert held == 1


def test_a_run_waits_while_a_large_one_holds_every_thread():
    budget, order = ThreadBudget(2), []
    with budget.run(2) as held:
        assert held == 2
        def take_one():
            with budget.run(1):
                order.append("acquired")

        waiting = threading.Thread(target=take_one)
        waiting.start()
        order.append("released")
    waiting.join(timeout=30)
    assert order == ["released", "acquired"]


def test_budget_and_options_refuse_nonsense():
    with pytest.raises(ValueError, match="at least 1 thread"):
        ThreadBudget(0)
    with pytest.raises(ValueError, match="large_batch_threads"):
        RuntimeOptions(large_batch_threads=0)


def test_large_runs_use_the_second_session_with_the_same_answers(bundled):
    runtime = ModelRuntime(bundled["copy"], options=RuntimeOptions(
        large_batch_threads=2, large_batch_from=8))
    assert runtime.large_session is not None
    assert [runtime.threads_for(b) for b in (1, 7, 8, 64)] == [1, 1, 2, 2]
    assert runtime.threads_used(8, granted=1) == 1 and runtime.threads_used(8, granted=2) == 2
    x = np.random.default_rng(0).integers(0, 2, (8, 21, 9)).astype(np.float32)
    x[:, 10:] = 0
    x[:, 10, :] = 0
    x[:, 10, 8] = 1  # the delimiter after 10 vectors
    one = runtime.run_checked(x, None, threads=1)
    two = runtime.run_checked(x, None, threads=2)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-6)
    every = ModelRuntime(bundled["copy"], options=RuntimeOptions(
        large_batch_threads=2, large_batch_from=1))
    assert every.threads_used(1, granted=2) == 2 and every.threads_used(1, granted=1) == 1
    # One session when the large one would add nothing.
    for options in (RuntimeOptions(), RuntimeOptions(intra_op_threads=0, large_batch_threads=2),
                    RuntimeOptions(intra_op_threads=2, large_batch_threads=2)):
        assert ModelRuntime(bundled["copy"], options=options).large_session is None


def copy_request(length: int, seed: int) -> dict:
    bits = np.random.default_rng(seed).integers(0, 2, (length, 8)).tolist()
    return {"sequence": bits}


@pytest.mark.parametrize("args, large_threads", [
    (("--large-batch-threads", "2"), "2"),
    ((), "1"),  # off by default
    (("--large-batch-threads", "2", "--inference-threads", "1"), "1"),  # none idle to give
])
def test_server_runs_a_large_batch_on_the_idle_threads(start_server, args, large_threads):
    server = start_server("--model", "copy", "--max-queue-delay-ms", "0", *args)
    envelope = {"instances": [copy_request(6, i) for i in range(40)]}
    answer = httpx.post(server.url + "/v1/models/copy:predict", json=envelope, timeout=60)
    assert answer.status_code == 200, answer.text
    single = httpx.post(server.url + "/v1/models/copy:predict",
                        json={"instances": [copy_request(6, 99)]}, timeout=60)
    assert single.status_code == 200, single.text
    text = server.metrics()
    runs = {t: metric(text, "ntm_inference_runs_total", f'model="copy",threads="{t}"')
            for t in ("1", "2")}
    if large_threads == "2":
        assert runs == {"1": 1.0, "2": 1.0}
    else:
        assert runs == {"1": 2.0, "2": 0.0}
    # Answers do not depend on the threads: each sequence comes back as sent.
    for request, prediction in zip(envelope["instances"], answer.json()["predictions"]):
        assert prediction["output"] == request["sequence"]
