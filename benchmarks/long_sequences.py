"""Far past the training range, as a user meets it: the bundled models with no flags, through
``ntm predict`` and through ``ntm serve`` over HTTP, on held-out requests.

    python benchmarks/long_sequences.py            # copy 500, 1000; recall 30, 60, 100 items
    python benchmarks/long_sequences.py --small    # a few short requests (for the tests)

Requests are drawn with their true answers from the task's own ``request_example`` (seeded
apart from any training data); every answer is scored bit by bit against the truth. The memory
rows and the ``within_training_range`` flag are read from the answers themselves. Writes
``benchmarks/results/long_sequences.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.loadgen import Server  # noqa: E402
from benchmarks.results_io import write_results  # noqa: E402

POINTS = {"copy": (500, 1000), "recall": (30, 60, 100)}
SMALL_POINTS = {"copy": (30, 60), "recall": (8,)}
ANSWER_FIELD = {"copy": "output", "recall": "item"}


def held_out(task, length: int, n: int) -> tuple[list[dict], list[dict]]:
    """``n`` requests at ``length`` and their true answers (a seed no training run uses)."""
    from ntm.contract.tasks import Difficulty

    rng = np.random.default_rng([2026, 11, 26, length])
    return tuple(map(list, zip(*[task.request_example(rng, Difficulty(length))
                                 for _ in range(n)])))


def wrong_bits(answer: dict, truth: dict, field: str) -> int:
    got, want = np.asarray(answer[field]), np.asarray(truth[field])
    return int((got != want).sum()) if got.shape == want.shape else int(want.size)


def score(name: str, how: str, length: int, answers: list[dict], truths: list[dict],
          seconds: float) -> dict:
    bits = np.array([wrong_bits(a, t, ANSWER_FIELD[name]) for a, t in zip(answers, truths)])
    return {"model": name, "via": how, "length": length, "sequences": len(bits),
            "mean_bits": float(bits.mean()), "worst_bits": int(bits.max()),
            "perfect_fraction": float((bits == 0).mean()),
            "memory_sizes": sorted({a["memory_size"] for a in answers}),
            "within_training_range": sorted({a["within_training_range"] for a in answers}),
            "seconds": round(seconds, 1)}


def via_predict(name: str, requests: list[dict], workdir: Path) -> list[dict]:
    """``ntm predict FILE --model NAME`` in a child process -> its predictions. It runs in
    ``workdir``: an export of the same name in the working directory's exports/ would replace
    the bundled model."""
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(requests))
    run = subprocess.run([sys.executable, "-m", "ntm.cli.main", "predict", str(path), "--model",
                          name], cwd=workdir, capture_output=True, text=True, timeout=3600)
    if run.returncode != 0:
        raise SystemExit(f"ntm predict failed: {run.stderr.strip()[-500:]}")
    return json.loads(run.stdout)["predictions"]


def via_http(url: str, name: str, requests: list[dict]) -> list[dict]:
    """One POST /v1/models/NAME:predict per request, as separate clients would send them."""
    import httpx

    answers = []
    with httpx.Client(timeout=600) as client:
        for request in requests:
            r = client.post(f"{url}/v1/models/{name}:predict", json=request)
            if r.status_code != 200:
                raise SystemExit(f"HTTP {r.status_code}: {r.text[:300]}")
            answers.append(r.json()["predictions"][0])
    return answers


def wait_ready(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("ntm serve did not become ready")


def markdown(result: dict) -> str:
    lines = ["# Far past the training range: bundled models, no flags", "",
             f"`{result['command']}`: held-out requests scored bit by bit against the truth, "
             f"through `ntm predict` and through `ntm serve` (one HTTP request each).", "",
             "| model | trained on | point | via | n | bits/seq | worst | perfect | memory rows "
             "| within training range | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {result['trained'][r['model']]} | {r['length']} | {r['via']} | "
            f"{r['sequences']} | {r['mean_bits']:.3f} | {r['worst_bits']} | "
            f"{100 * r['perfect_fraction']:.0f}% | {', '.join(map(str, r['memory_sizes']))} | "
            f"{', '.join(str(v).lower() for v in r['within_training_range'])} | "
            f"{r['seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", "-n", type=int, default=50)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    from ntm.serving.models import bundled_models
    from ntm.serving.runtime import ModelRuntime

    points = SMALL_POINTS if args.small else POINTS
    n = 3 if args.small else args.sequences
    rows, trained = [], {}
    bundled = [f"--model={name}={path}" for name, path in bundled_models().items()]
    with tempfile.TemporaryDirectory() as tmp, Server(bundled) as server:
        url = f"http://127.0.0.1:{server.port}"
        wait_ready(url)
        for name, lengths in points.items():
            task = ModelRuntime(bundled_models()[name]).task
            trained[name] = task.training_range()
            for length in lengths:
                requests, truths = held_out(task, length, n)
                for how, run in (("ntm predict", lambda: via_predict(name, requests, Path(tmp))),
                                 ("HTTP", lambda: via_http(url, name, requests))):
                    start = time.perf_counter()
                    answers = run()
                    rows.append(score(name, how, length, answers, truths,
                                      time.perf_counter() - start))
                    print(f"{name} {length} via {how}: {rows[-1]['mean_bits']:.3f} bits/seq",
                          file=sys.stderr)
    result = {"benchmark": "long_sequences",
              "command": "python benchmarks/long_sequences.py" + (" --small" if args.small
                                                                   else ""),
              "trained": trained, "rows": rows}
    write_results(args.out, "long_sequences", args.small, result, markdown(result))


if __name__ == "__main__":
    main()
