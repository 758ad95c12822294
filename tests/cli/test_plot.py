"""``ntm plot`` through Click's CliRunner: PNGs of the size asked for, one-line errors."""

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ntm.cli.main import cli
from ntm.cli.figures import memory_window, running_median

pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SMALL = ["--dpi", "40", "--width", "5", "--height", "4"]  # 200 x 160 px, fast to draw


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def invoke(*args: str):
    return CliRunner().invoke(cli, ["plot", *map(str, args)])


def assert_clean_failure(result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture
def metrics_run(tmp_path):
    """A run directory holding a small metrics.jsonl (zeros included, as trained runs log)."""
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": s, "sequences": 4 * s, "elapsed": s / 10, "loss": 60.0 / s,
              "bits_per_seq": max(0.0, 30.0 - s), "stage": 1 if s < 30 else 2}
             for s in range(5, 60, 5)]
    lines += [{"step": s, "sequences": 4 * s, "elapsed": s / 10, "eval_bits_per_seq": b,
               "stage": 1} for s, b in ((20, 12.5), (40, 0.0))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


@pytest.fixture
def copy_table(tmp_path):
    """A table as ``ntm evaluate --json`` writes it."""
    rows = [{"length": n, "repeats": None, "sequences": 4, "mean_bits": b, "worst_bits": 2 * b,
             "perfect_fraction": 1.0 if b == 0 else 0.5} for n, b in ((10, 0.0), (30, 0.5),
                                                                      (60, 3.25))]
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"task": "copy", "run_dir": "runs/copy", "step": 100,
                                "sequences_seen": 400, "seed": 1234, "rows": rows}))
    return path


# -- happy paths -----------------------------------------------------------------------------
@pytest.mark.parametrize("model, example", [("copy", "copy.json"), ("recall", "recall.json"),
                                            (None, "copy-batch.json")])
def test_attention_writes_a_png_of_the_asked_size(tmp_path, model, example):
    out = tmp_path / "figs" / "attention.png"
    args = ["attention", "--input", EXAMPLES / example, "-o", out, *SMALL]
    result = invoke(*args, *(["--model", model] if model else []))
    assert result.exit_code == 0, result.output
    assert png_size(out) == (200, 160)
    assert f"wrote {out} (200x160 px)" in result.output
    assert [p.name for p in out.parent.iterdir()] == ["attention.png"]  # no temporary left


def test_attention_default_size(tmp_path):
    out = tmp_path / "a.png"
    result = invoke("attention", "--model", "copy", "--input", EXAMPLES / "copy.json", "-o", out)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (800, 900)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file, not private


def test_curves_from_a_run_dir_and_from_the_file(metrics_run, tmp_path):
    for source, smooth in ((metrics_run, "3"), (metrics_run / "metrics.jsonl", "1")):
        out = tmp_path / f"curves-{smooth}.png"
        result = invoke("curves", source, "-o", out, "--smooth", smooth, "--dpi", "50")
        assert result.exit_code == 0, result.output
        assert png_size(out) == (400, 300)  # default 8 x 6 inches


def test_curves_overlays_several_runs_one_label_each(metrics_run, tmp_path):
    """The NTM and its LSTM baseline on one axis; a run with no held-out evaluation yet is
    drawn from its training points."""
    untested = tmp_path / "lstm"
    untested.mkdir()
    (untested / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "sequences": 4 * s, "elapsed": s, "loss": 9.0, "bits_per_seq": 7.5,
                    "stage": 1}) + "\n" for s in (10, 20, 30)))
    for scale in ("log", "linear"):
        out = tmp_path / f"overlay-{scale}.png"
        result = invoke("curves", metrics_run, untested, "--label", "NTM", "--label", "LSTM",
                        "--scale", scale, "-o", out, *SMALL)
        assert result.exit_code == 0, result.output
        assert png_size(out) == (200, 160)
    result = invoke("curves", metrics_run, untested, "-o", tmp_path / "default-labels.png", *SMALL)
    assert result.exit_code == 0, result.output


def test_curves_wants_one_label_per_run(metrics_run, tmp_path):
    out = tmp_path / "o.png"
    result = invoke("curves", metrics_run, metrics_run, "--label", "only one", "-o", out)
    assert_clean_failure(result, 2, "1 label(s) for 2 RUN_DIR(s)")
    assert not out.exists()


def test_generalisation_from_an_evaluate_table(copy_table, tmp_path):
    out = tmp_path / "g.png"
    result = invoke("generalisation", copy_table, "-o", out, *SMALL)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (200, 160)


def test_generalisation_of_repeat_copy_groups_by_repeats(tmp_path):
    rows = [{"length": n, "repeats": r, "sequences": 2, "mean_bits": float(n * r) / 10,
             "worst_bits": float(n * r) / 5} for n, r in ((5, 5), (10, 10), (20, 10), (10, 20))]
    table = tmp_path / "rc.json"
    table.write_text(json.dumps({"task": "repeat-copy", "rows": rows,
                                 "train_lengths": [1, 8], "train_repeats": [1, 10]}))
    out = tmp_path / "rc.png"
    result = invoke("generalisation", table, "-o", out, *SMALL)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (200, 160)


def test_generalisation_of_a_bundled_model(tmp_path):
    out = tmp_path / "g.png"
    result = invoke("generalisation", "copy", "-n", "4", "-o", out, "--dpi", "20")
    assert result.exit_code == 0, result.output
    assert "bits/seq" in result.output and "     120 " in result.output  # default points
    assert png_size(out) == (140, 90)  # default 7 x 4.5 inches


@pytest.mark.slow
def test_generalisation_of_a_run_dir(tmp_path):
    pytest.importorskip("tensorflow")
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    run = tmp_path / "copy"
    tc = TrainConfig(task="copy", max_length=3, batch_size=2, steps=2, eval_every=2,
                     eval_size=2, checkpoint_every=2, log_every=1, target_error=-1)
    Trainer(Run.create(run, tc, memory_size=8, memory_width=4, controller_size=8)).run()
    out = tmp_path / "g.png"
    result = invoke("generalisation", run, "--points", "2,4", "-n", "2", "-o", out, *SMALL)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (200, 160)
    result = invoke("curves", run, "-o", out, *SMALL)  # the trainer's own metrics.jsonl
    assert result.exit_code == 0, result.output


def test_onnx_paths_never_import_tensorflow(tmp_path):
    """attention and generalisation of a model run on onnxruntime alone; a run directory then
    fails with the extra to install (fresh process, TensorFlow blocked)."""
    (tmp_path / "tensorflow.py").write_text("raise ImportError('TensorFlow is blocked here')\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from ntm.cli.main import cli
        run = CliRunner().invoke
        r = run(cli, ["plot", "attention", "-m", "recall", "-i", {str(EXAMPLES / "recall.json")!r},
                      "-o", "a.png", "--dpi", "20"])
        assert r.exit_code == 0, r.output
        r = run(cli, ["plot", "generalisation", "copy", "--points", "3", "-n", "2", "-o", "g.png",
                      "--dpi", "20"])
        assert r.exit_code == 0, r.output
        r = run(cli, ["plot", "generalisation", "run", "-o", "r.png"])
        assert r.exit_code == 1 and "pip install -e '.[train]'" in r.output, r.output
        assert "tensorflow" not in sys.modules
        print("clean")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.stdout.strip() == "clean", done.stdout + done.stderr[-3000:]


# -- bad input -------------------------------------------------------------------------------
def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch, copy_table):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = invoke("generalisation", copy_table, "-o", tmp_path / "g.png")
    assert_clean_failure(result, 1, "pip install -e '.[plot]'")
    assert not (tmp_path / "g.png").exists()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("make_args, code, message", [
    (lambda t: ["attention", "-i", t / "none.json"], 2, "does not exist"),
    (lambda t: ["attention", "-i", write(t / "bad.json", "{oops")],
     1, "bad.json: input: not valid"),
    (lambda t: ["attention", "-i", write(t / "q.json", '{"x": 1}')], 1, "cannot tell the task"),
    (lambda t: ["attention", "-m", "sort", "-i", EXAMPLES / "copy.json"],
     1, "unknown model 'sort'"),
    (lambda t: ["attention", "-i", EXAMPLES / "copy.json", "--index", "1"], 2, "holds 1 request"),
    (lambda t: ["attention", "-i", write(t / "two.json", '{"sequence": [[0,0,0,0,0,0,0,2]]}')],
     1, "sequence[0][7]: must be 0 or 1"),
    (lambda t: ["curves", t], 1, "has no metrics.jsonl"),
    (lambda t: ["curves", write(t / "metrics.jsonl", "\n")], 1, "holds no training or evaluation"),
    (lambda t: ["curves", write(t / "metrics.jsonl", '{"step": 1, "sequences": 4, "loss": 1, '
                                                     '"bits_per_seq": 0}\n{oops\n')],
     1, "metrics.jsonl line 2: not valid JSON"),
    (lambda t: ["curves", write(t / "metrics.jsonl", '{"step": 1, "loss": 1}\n')],
     1, "line 1: not a metrics entry"),
    (lambda t: ["curves", t / "nowhere"], 2, "does not exist"),
    (lambda t: ["generalisation", write(t / "t.json", "[1, 2")], 1, "t.json: not valid JSON"),
    (lambda t: ["generalisation", write(t / "t.json", '{"rows": []}')], 1, "'task' and 'rows'"),
    (lambda t: ["generalisation", write(t / "t.json", '{"task": "sort", "rows": []}')],
     1, "unknown task 'sort'"),
    (lambda t: ["generalisation", write(t / "t.json", '{"task": "copy", '
                                                       '"rows": [{"length": 1}]}')],
     1, "rows[0]: expected numbers"),
    (lambda t: ["generalisation", "sort"], 1, "unknown model 'sort'"),
    (lambda t: ["generalisation", "copy", "--points", "ten"], 2, "bad point 'ten'"),
    (lambda t: ["generalisation", "copy", "--dpi", "0"], 2, "--dpi"),
])
def test_bad_input_gives_one_line_errors(tmp_path, make_args, code, message):
    out = tmp_path / "out.png"
    result = invoke(*make_args(tmp_path), "-o", out)
    assert_clean_failure(result, code, message)
    assert not out.exists()


def test_output_is_required():
    result = invoke("curves", ".")
    assert_clean_failure(result, 2, "Missing option '-o'")


# -- drawing helpers -------------------------------------------------------------------------
def test_memory_window_follows_a_head_across_the_wrap():
    weights = np.full((5, 2, 16), 1 / 16, np.float32)  # [time, heads, N], unfocused
    weights[:, 0] = 0.0
    weights[np.arange(5), 0, [1, 0, 15, 14, 13]] = 1.0
    assert memory_window(weights, pad=1).tolist() == [12, 13, 14, 15, 0, 1, 2]
    assert memory_window(weights, pad=8).tolist() == list(range(16))
    assert memory_window(np.zeros((3, 1, 16))).tolist() == list(range(16))


def test_running_median_keeps_length_and_ignores_a_spike():
    values = np.array([4.0, 3.0, 100.0, 2.0, 1.0])
    assert running_median(values, 3).tolist() == [3.5, 4.0, 3.0, 2.0, 1.5]
    assert running_median(values, 1).tolist() == values.tolist()


def test_attention_from_a_running_server(tmp_path):
    """--url: the picture drawn from what the server returns with return_attention."""
    from tests.serving.conftest import ServerProcess

    server = ServerProcess(["--model", "copy", "--model", "repeat-copy"],
                           env={"NTM_API_KEY": "k"})
    try:
        for name in ("copy", "repeat-copy"):
            out = tmp_path / f"{name}.png"
            result = CliRunner().invoke(cli, [
                "plot", "attention", "--url", server.url, "--api-key", "k", "--model", name,
                "--input", str(EXAMPLES / f"{name}.json"), "-o", str(out), "--dpi", "50"])
            assert result.exit_code == 0, result.output
            assert png_size(out) == (400, 450)
        denied = CliRunner().invoke(cli, [
            "plot", "attention", "--url", server.url, "--model", "copy",
            "--input", str(EXAMPLES / "copy.json"), "-o", str(tmp_path / "x.png")],
            env={"NTM_API_KEY": ""})
        assert denied.exit_code == 1 and "answered 401" in denied.output
    finally:
        server.stop()
    gone = CliRunner().invoke(cli, [
        "plot", "attention", "--url", server.url, "--model", "copy",
        "--input", str(EXAMPLES / "copy.json"), "-o", str(tmp_path / "y.png")])
    assert gone.exit_code == 1 and "cannot reach" in gone.output
    assert "Traceback" not in gone.output
