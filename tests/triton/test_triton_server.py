"""What ``ntm export --format triton`` writes, on a real Triton 2.51, through tritonclient over
HTTP and gRPC: it loads, answers as ``ntm serve`` does, grows its memory, batches requests of
different lengths, and keeps many stateful sequences apart."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.serving.conftest import wait_until
from tests.triton.conftest import IDLE_SECONDS

http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODELS = ("copy", "copy_stateful", "copy_idle", "copy_fixed41")


def copy_inputs(length: int, seed: int) -> np.ndarray:
    """One copy sequence [1, 2L+1, 9]: L random 8-bit vectors, the delimiter, L blank steps."""
    rng = np.random.default_rng([seed, length])
    x = np.zeros((1, 2 * length + 1, 9), np.float32)
    x[0, :length, :8] = rng.integers(0, 2, (length, 8))
    x[0, length, 8] = 1.0
    return x


def infer(client, module, model: str, x: np.ndarray, **sequence) -> np.ndarray:
    """Probabilities of ``x`` from ``model`` (tritonclient, ``module`` http or grpc)."""
    tensor = module.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    wanted = [module.InferRequestedOutput("probabilities")]
    return client.infer(model, [tensor], outputs=wanted, **sequence).as_numpy("probabilities")


def test_every_model_is_ready(triton, clients):
    reasons = {m["name"]: m.get("reason") for m in triton.index if m.get("state") != "READY"}
    assert not reasons, f"not READY: {reasons}"
    for client, _ in clients.values():
        assert client.is_server_ready()
        assert all(client.is_model_ready(name) for name in MODELS)


def test_the_fixed_length_model_answers_with_attention(clients, ntm_serve):
    client, module = clients["grpc"]
    x = copy_inputs(20, 8)  # 41 steps: the model's length
    tensor = module.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("copy_fixed41", [tensor])
    assert result.as_numpy("attention").shape == (1, 41, 2, 128)
    expected = infer(http.InferenceServerClient(f"127.0.0.1:{ntm_serve.port}"), http, "copy", x)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["copy", "copy_stateful"])
def test_answers_equal_ntm_serve(clients, ntm_serve, protocol, model):
    client, module = clients[protocol]
    ours = http.InferenceServerClient(f"127.0.0.1:{ntm_serve.port}")
    for i, length in enumerate((5, 20, 60)):
        x = copy_inputs(length, i)
        sequence = {"sequence_id": 1000 + i, "sequence_start": True, "sequence_end": True} \
            if model != "copy" else {}
        theirs = infer(client, module, model, x, **sequence)
        expected = infer(ours, http, "copy", x)
        assert theirs.shape == expected.shape == (1, 2 * length + 1, 8)
        np.testing.assert_allclose(theirs, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("length", [500, 1000])
def test_long_copies_are_exact_with_memory_that_grows(clients, length):
    client, module = clients["grpc"]
    x = copy_inputs(length, 3)
    p = infer(client, module, "copy", x)
    assert p.shape == (1, 2 * length + 1, 8)
    assert ((p[0, length + 1:] > 0.5) == (x[0, :length, :8] > 0.5)).all()


def batch_sizes(triton, model: str) -> dict[int, int]:
    stats = httpx.get(f"http://{triton.http}/v2/models/{model}/stats", timeout=10).json()
    return {int(b["batch_size"]): int(b["compute_infer"]["count"])
            for b in stats["model_stats"][0]["batch_stats"]}


def test_concurrent_requests_of_mixed_lengths_are_batched_and_equal_one_by_one(triton, clients):
    lengths = [1, 3, 5, 20, 7, 60, 10, 130, 2, 15, 40, 250, 9, 33, 12, 18]  # 128 and 256 rows
    inputs = [copy_inputs(length, 40 + i) for i, length in enumerate(lengths)]
    client, module = clients["http"]
    alone = [infer(client, module, "copy", x) for x in inputs]
    before = batch_sizes(triton, "copy")

    def together(i):
        # half over each protocol, a client of its own per thread
        module = grpc if i % 2 else http
        own = module.InferenceServerClient(triton.grpc if i % 2 else triton.http)
        return infer(own, module, "copy", inputs[i])

    for attempt in range(5):  # until some of them shared a run (16 threads usually do at once)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(together, range(16)))
        for x, a, b in zip(inputs, answers, alone):
            assert a.shape == b.shape == (1, x.shape[1], 8)
            # the same to float32 rounding: BLAS blocks a batch differently from one sequence
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
        after = batch_sizes(triton, "copy")
        if any(size > 1 and count > before.get(size, 0) for size, count in after.items()):
            return
    pytest.fail(f"no two of 16 concurrent requests shared a run: {after}")


def run_in_chunks(client, module, model, x, sequence_id, cuts, rows=None):
    parts = []
    for k, (a, b) in enumerate(zip(cuts, cuts[1:])):
        tensors = [module.InferInput("inputs", [1, b - a, 9], "FP32")]
        tensors[0].set_data_from_numpy(x[:, a:b])
        if rows is not None and k == 0:
            tensors.append(module.InferInput("memory_size", [1], "INT32"))
            tensors[1].set_data_from_numpy(np.array([rows], np.int32))
        result = client.infer(model, tensors, sequence_id=sequence_id, sequence_start=k == 0,
                              sequence_end=b == x.shape[1])
        parts.append(result.as_numpy("probabilities"))
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_sequence_in_three_chunks_equals_one_shot(clients, protocol):
    client, module = clients[protocol]
    x = copy_inputs(20, 5)
    pieces = run_in_chunks(client, module, "copy_stateful", x, 77, [0, 12, 30, 41])
    whole = infer(client, module, "copy", x)
    np.testing.assert_allclose(pieces, whole, atol=1e-5, rtol=0)


def test_a_long_sequence_gets_the_rows_it_asks_for(clients):
    """400 vectors need 512 rows; the first chunk alone would get 256."""
    client, module = clients["grpc"]
    x = copy_inputs(400, 6)
    pieces = run_in_chunks(client, module, "copy_stateful", x, 78, [0, 300, 801], rows=512)
    assert ((pieces[0, 401:] > 0.5) == (x[0, :400, :8] > 0.5)).all()


def test_eight_interleaved_sequences_are_kept_apart(clients):
    client, module = clients["grpc"]
    inputs = {100 + i: copy_inputs(20, 100 + i) for i in range(8)}
    cuts = [0, 10, 25, 41]
    parts: dict[int, list] = {sid: [] for sid in inputs}
    for k in range(3):
        for sid, x in inputs.items():
            a, b = cuts[k], cuts[k + 1]
            parts[sid].append(infer(client, module, "copy_stateful", x[:, a:b], sequence_id=sid,
                                    sequence_start=k == 0, sequence_end=k == 2))
    for sid, x in inputs.items():
        whole = infer(client, module, "copy", x)
        np.testing.assert_allclose(np.concatenate(parts[sid], axis=1), whole, atol=1e-5, rtol=0)


def test_an_idle_sequence_expires(triton, clients):
    client, module = clients["grpc"]
    x = copy_inputs(10, 9)
    infer(client, module, "copy_idle", x[:, :5], sequence_id=4242, sequence_start=True)
    wait_until(lambda: "CORRID 4242: max sequence idle exceeded" in triton.log_text(),
               f"Triton to end sequence 4242 after {IDLE_SECONDS} s idle")
    with pytest.raises(InferenceServerException, match="START"):
        infer(client, module, "copy_idle", x[:, 5:], sequence_id=4242)


def test_the_config_as_triton_parsed_it(triton):
    config = httpx.get(f"http://{triton.http}/v2/models/copy/config", timeout=10).json()
    assert config["max_batch_size"] == 64 and config["input"][0]["allow_ragged_batch"]
    assert config["batch_input"][0]["kind"] == "BATCH_ITEM_SHAPE"
    assert config["parameters"]["intra_op_thread_count"]["string_value"] == "1"
    stateful = httpx.get(f"http://{triton.http}/v2/models/copy_stateful/config",
                         timeout=10).json()
    assert stateful["sequence_batching"]["oldest"]["max_candidate_sequences"] == 1000
    assert json.dumps(stateful).count("sequence_start") == 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_v2_client_example_runs_unchanged_against_triton(triton, protocol):
    import subprocess
    import sys

    from tests.serving.conftest import EXAMPLES, REPO

    request = EXAMPLES / "copy.json"
    url = triton.grpc if protocol == "grpc" else triton.http
    run = subprocess.run([sys.executable, str(REPO / "examples" / "v2_client.py"), "--url", url,
                          "--model", "copy", str(request)] + (["--grpc"] if protocol == "grpc"
                                                              else ["--binary"]),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["output"] == json.loads(request.read_text())["sequence"]
