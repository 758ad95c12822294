"""Each benchmark runs end to end in its small mode, so it cannot rot."""

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import seeds

REPO = Path(__file__).resolve().parents[1]


def run_small(name: str, out: Path, *options: str) -> tuple[dict, str]:
    """Run benchmarks/NAME.py --small [OPTIONS] into ``out`` (also its working directory: the
    user's runs/ and exports/ stay out of it); -> (its JSON, its Markdown)."""
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--small",
                          "--out", str(out), *options], cwd=out, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return (json.loads((out / f"{name}_small.json").read_text()),
            (out / f"{name}_small.md").read_text())


def test_train_convergence_small(tmp_path):
    pytest.importorskip("tensorflow")
    result, table = run_small("train_convergence", tmp_path)
    assert result["stopped"]["step"] == 20 and result["sequences_per_s"] > 0
    assert [row["length"] for row in result["evaluate"]] == [5, 10, 20]
    assert table.startswith("# Training")


def test_train_threads_small(tmp_path):
    pytest.importorskip("tensorflow")
    result, table = run_small("train_threads", tmp_path)
    (only,) = result["rounds"]
    assert only["one"] > 0 and only["auto"] > 0 and result["same_loss"]
    assert "| **median** |" in table


def test_inference_small(tmp_path):
    pytest.importorskip("tensorflow")
    result, table = run_small("inference", tmp_path)
    engines = {(r["engine"], r["length"], r["batch"]) for r in result["rows"]}
    assert engines == {(e, n, b) for e in ("savedmodel", "onnx-dynamic", "onnx-fixed")
                       for n in (2, 4) for b in (1, 4)}
    for row in result["rows"]:
        assert row["median_ms"] > 0 and row["sequences_per_s"] > 0
        assert 0 < row["fraction_of_matmul"] < 1
    assert result["matmul_gflops"] > 0
    assert table.startswith("# Inference")
    memory = {(r["timing"], r["engine"], r["batch"]): r for r in result["memory"]}
    assert set(memory) == {(t, e, b) for t, engines in (("before", ("trained rows", "baseline")),
                                                        ("rows", ("16", "32")))
                           for e in engines for b in (1, 2)}
    assert memory[("rows", "32", 1)]["memory_size"] == 32
    assert memory[("before", "baseline", 2)]["memory_size"] == 16
    assert memory[("before", "baseline", 1)]["ratio"] == 1.0
    assert memory[("rows", "16", 2)]["ratio"] == 1.0
    assert "## Memory that grows" in table
    before = {(b["engine"], b["batch"]): b for b in result["before_loop_rewrites"]}
    assert set(before) == {(e, b) for e in ("now", "82-node Loop") for b in (1, 2)}
    assert before[("82-node Loop", 1)]["speedup"] == 1.0
    assert before[("now", 2)]["max_abs_diff"] == 0.0  # the tiny model against itself
    assert set(result["loop_rewrite_targets"]) == {
        "speedup_vs_before_batch1", "speedup_vs_before_batch2", "dynamic_vs_savedmodel_worst"}
    assert "## The bundled copy model against itself" in table
    threads = {(t["threads"], t["batch"]): t for t in result["thread_counts"]}
    assert set(threads) == {(n, b) for n in (1, 2) for b in (1, 2)}
    assert threads[(1, 2)]["speedup"] == 1.0 and threads[(2, 2)]["median_ms"] > 0
    assert "## Intra-op threads per batch size" in table


def test_serving_small(tmp_path):
    result, table = run_small("serving", tmp_path)
    for mode in ("batching", "no_batching", "batching_trimmed", "batching_v2_binary"):
        server = result["server"][mode]
        assert server["errors"] == 0, server["error_kinds"]  # every answer checked
        assert server["requests_per_s"] > 0 and server["p99_ms"] >= server["p50_ms"] > 0
        assert server["exit_code"] == 0 and server["server_cpu_ms_per_request"] > 0
    assert result["in_process"]["one_at_a_time_per_s"] > 0
    assert result["in_process"]["batches_of_4_cpu_ms"] > 0
    assert result["targets"]["server_cpu_per_request_vs_in_process"]["measured"] > 0
    batched = result["server"]["batching"]  # one round: the median of one difference
    assert batched["other_threads_cpu_ms_per_request"] == pytest.approx(
        batched["server_cpu_ms_per_request"] - batched["event_loop_cpu_ms_per_request"], abs=2e-3)
    assert "Outside its event loop" in table
    plan = result["thread_plan"]  # --large-batch-threads 2 against 1, every answer checked
    assert plan["errors"] == 0 and plan["envelope_calls"] == 6 and plan["load_runs"] == 2
    assert plan["envelope_speedup"] > 0 and plan["clients_ratio"] > 0
    assert "## Threads planned per batch size" in table
    assert table.startswith("# Serving") and "V2 binary" in table


def test_soak_small(tmp_path):
    result, table = run_small("soak", tmp_path)
    assert result["errors"] == 0, result["error_kinds"]
    assert result["requests"] == 400 and result["server_exit_code"] == 0
    assert result["rss_growth_mb"] < 50  # a leak of ~0.1 MB per request would show
    assert result["p99_ms"] >= result["p50_ms"] > 0 and table.startswith("# Soak")


def test_seeds_small(tmp_path):
    """Two seeds, one of them resumed from a run stopped part way; a second sweep keeps both."""
    pytest.importorskip("tensorflow")
    runs = tmp_path / "runs"
    stopped_early = runs / "copy-seed2"
    train = subprocess.run([sys.executable, "-m", "ntm.cli.main", "train", "--task", "copy",
                            "--seed", "2", "--out", str(stopped_early), *seeds.SMALL_TRAIN_ARGS,
                            "--steps", "100"], cwd=tmp_path, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    before = (stopped_early / "metrics.jsonl").read_text().splitlines()

    result, table = run_small("seeds", tmp_path, "--task", "copy", "--runs-root", str(runs))
    section = result["tasks"]["copy"]
    rows = section["seeds"]
    assert [r["seed"] for r in rows] == [1, 2] and section["complete"]
    for row in rows:
        assert row["failure"] is None
        assert row["stopped"]["reason"] == "target" or row["stopped"]["step"] == 300
        assert [(g["length"], g["memory_size"], g["sequences"]) for g in row["generalisation"]] \
            == [(3, 8, 16), (4, 8, 16), (8, 16, 16)]  # rows as ntm evaluate gives them
    # Seed 2 continued its checkpoint: its first 100 steps of metrics are the ones trained before.
    after = (stopped_early / "metrics.jsonl").read_text().splitlines()
    assert after[:len(before)] == before and len(after) > len(before)
    # Median and worst, recomputed from the rows (None: not within budget = slowest).
    for key in ("sequences", "train_seconds"):
        values = sorted(math.inf if r["first_below_threshold"] is None
                        else r["first_below_threshold"][key] for r in rows)
        median, worst = (values[0] + values[1]) / 2, values[1]
        assert section["median"][key] == (None if math.isinf(median) else median)
        assert section["worst"][key] == (None if math.isinf(worst) else worst)
    for i in range(2):
        bits = [r["generalisation"][i]["mean_bits"] for r in rows]
        perfect = [r["generalisation"][i]["perfect_fraction"] for r in rows]
        assert section["median"]["generalisation"][i]["mean_bits"] == pytest.approx(sum(bits) / 2)
        assert section["worst"]["generalisation"][i]["mean_bits"] == max(bits)
        assert section["worst"]["generalisation"][i]["perfect_fraction"] == min(perfect)
    assert table.startswith("# Seed sweep") and table.count("\n| 1 |") == 1
    assert "| **median** |" in table and "| **worst** |" in table

    # Run again: nothing is retrained or re-measured, the results stay as they were.
    checkpoints = {p: p.stat().st_mtime_ns for p in runs.glob("*/checkpoints/*")}
    again, _ = run_small("seeds", tmp_path, "--task", "copy", "--runs-root", str(runs))
    assert again == result
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/checkpoints/*")} == checkpoints


def test_seeds_state_refuses_rows_trained_under_other_task_defaults(tmp_path):
    """A task's defaults change when a sweep says so (copy's polish): rows trained under the
    old ones are refused, not mixed into a section that claims the new ones."""
    sweep = seeds.Sweep(task="copy", seeds=(1,), runs_root=tmp_path, train_args=(),
                        budget_steps=20000, points=seeds.EVAL_POINTS["copy"], eval_sequences=50)
    assert sweep.task_defaults() == {"write_entropy": 0.01, "memory_noise": 0.5,
                                     "blank_runs": 0.3, "polish_steps": 6000}
    seeds.save_state(sweep, {"1": {"seed": 1}})
    assert seeds.load_state(sweep) == {"1": {"seed": 1}}
    state = json.loads(sweep.state_path.read_text())
    for recorded in ({}, None):  # the old defaults; a state file from before they were recorded
        if recorded is None:
            del state["task_defaults"]
        else:
            state["task_defaults"] = recorded
        sweep.state_path.write_text(json.dumps(state))
        with pytest.raises(SystemExit, match="defaults were .*choose another --runs-root"):
            seeds.load_state(sweep)
    section = {"command": sweep.command(), "defaults": True,
               "task_defaults": sweep.task_defaults()}
    assert seeds._defaults_note(section) == \
        " (the defaults: --write-entropy 0.01, --memory-noise 0.5, --blank-runs 0.3, " \
        "--polish-steps 6000)"
    # A variant says what the defaults were when it ran: its command means something else later.
    assert seeds._defaults_note({"defaults": False, "task_defaults": {"restart_at": 8000}}) == \
        " (run when the task's own defaults were --restart-at 8000)"
    assert seeds._defaults_note({"defaults": False, "task_defaults": None}) == \
        " (run when the task's own defaults were none)"


def test_two_sweeps_of_one_section_keep_each_others_rows(tmp_path):
    """Two processes sweeping other seeds of one section (each read the state before the other
    wrote): every finished row stays in the state and in the section, whoever writes last."""
    def sweep(*numbers):
        return seeds.Sweep(task="copy", seeds=numbers, runs_root=tmp_path / "runs", train_args=(),
                           budget_steps=20000, points=seeds.EVAL_POINTS["copy"],
                           eval_sequences=50)

    def row(a_sweep, seed, evaluation=None):
        gen = [{"length": p.length, "memory_size": None, "mean_bits": float(seed),
                "perfect_fraction": 1.0} for p in a_sweep.points]
        return {"seed": seed, "failure": None, "generalisation": gen,
                "first_below_threshold": {"step": 100, "sequences": 400 * seed,
                                          "train_seconds": 10.0 * seed},
                "stopped": {"reason": "target", "step": 200, "heldout_bits_per_seq": 0.0},
                "evaluation": evaluation or a_sweep.evaluation()}

    first, second = sweep(1, 2), sweep(3)
    with seeds.state_lock(first):
        assert seeds.load_state(first) == {}  # the first process starts ...
    with seeds.state_lock(second):  # ... the second finishes seed 3 meanwhile
        seeds.write_report(second, seeds.record_row(second, row(second, 3)), tmp_path, False)
    with seeds.state_lock(first):  # the first finishes seed 1 on what it read at the start
        kept = seeds.record_row(first, row(first, 1))
        seeds.write_report(first, kept, tmp_path, False)
    assert sorted(seeds.load_state(first)) == ["1", "3"]
    section = json.loads((tmp_path / "seeds.json").read_text())["tasks"]["copy"]
    assert section["seeds_planned"] == [1, 2, 3] and section["seeds_done"] == 2
    assert [r["seed"] for r in section["seeds"]] == [1, 3] and not section["complete"]
    assert section["median"]["sequences"] == 800 and section["worst"]["sequences"] == 1200
    # A row measured otherwise (another --eval-sequences) is not mixed into the section.
    with seeds.state_lock(first):
        seeds.record_row(second, row(second, 4, evaluation={"sequences": 16}))
        section = seeds.task_section(first, seeds.load_state(first))
    assert section["seeds_planned"] == [1, 2, 3]


def test_seeds_summary_counts_a_failed_seed_as_slowest():
    """Not within budget is a result: it makes the worst (and here the median) "not reached"."""
    points = (seeds.EvalPoint(50), seeds.EvalPoint(120))

    def row(sequences, bits, perfect):
        first = None if sequences is None else {"step": sequences // 4, "sequences": sequences,
                                                "train_seconds": sequences / 100}
        gen = [{"mean_bits": b, "perfect_fraction": p} for b, p in zip(bits, perfect)]
        return {"first_below_threshold": first, "generalisation": gen}

    rows = [row(9000, (0.0, 0.5), (1.0, 0.8)), row(None, (4.0, 30.0), (0.0, 0.0)),
            row(12000, (0.1, 2.0), (0.9, 0.2))]
    summary = seeds.summarise(rows, points)
    assert summary["median"]["sequences"] == 12000 and summary["median"]["train_seconds"] == 120
    assert summary["worst"]["sequences"] is None and summary["worst"]["train_seconds"] is None
    assert [g["mean_bits"] for g in summary["median"]["generalisation"]] == [0.1, 2.0]
    assert [g["mean_bits"] for g in summary["worst"]["generalisation"]] == [4.0, 30.0]
    assert [g["perfect_fraction"] for g in summary["worst"]["generalisation"]] == [0.0, 0.0]
    assert summary["median"]["generalisation"][1]["length"] == 120
    # Two of four not within budget: the median is not within budget either.
    summary = seeds.summarise(rows + [row(None, (9.0, 9.0), (0.0, 0.0))], points)
    assert summary["median"]["sequences"] is None


def test_memory_rules_small(tmp_path):
    pytest.importorskip("tensorflow")
    result, table = run_small("memory_rules", tmp_path)
    rows = result["models"]["tiny-copy"]["rows"]
    assert len(rows) == 4 * 2  # every variant at every point
    assert {(r["length"], r["memory_size"]) for r in rows} == {(8, 16), (20, 32)}
    assert {(r["grow_logit_margin"], r["grow_strength_power"]) for r in rows} == {
        (0.0, 0.0), (0.0, 2.0), (30.0, 0.0), (30.0, 2.0)}
    assert "| 30 | 2 |" in table


def test_long_sequences_small(tmp_path):
    result, table = run_small("long_sequences", tmp_path)
    rows = {(r["model"], r["length"], r["via"]): r for r in result["rows"]}
    assert set(rows) == {(m, n, via) for m, n in (("copy", 30), ("copy", 60), ("recall", 8))
                         for via in ("ntm predict", "HTTP")}
    assert rows[("copy", 60, "HTTP")]["memory_sizes"] == [128]
    for row in rows.values():  # the bundled models are perfect this far out
        assert row["sequences"] == 3 and row["mean_bits"] == 0.0
        assert row["within_training_range"] == [False]
    assert result["trained"]["copy"] == "length 1-20"
    assert "| copy | length 1-20 | 60 | HTTP |" in table


def test_repeat_count_small(tmp_path):
    result, table = run_small("repeat_count", tmp_path)
    assert [(r["length"], r["repeats"]) for r in result["rows"]] == [(2, 2), (4, 3)]
    for row in result["rows"]:
        assert row["within_training_range"] and row["sequences"] == 4
        assert sum(row["end_marker_after_repeats"].values()) == 4
        assert 0 <= row["perfect_fraction"] <= 1
    assert table.startswith("# Repeat-copy")


def tiny_copy_run(run_dir: Path, steps: int, **train) -> Path:
    """A copy run of a tiny model trained for ``steps`` (a checkpoint every 10) in ``run_dir``."""
    pytest.importorskip("tensorflow")
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    tc = TrainConfig(task="copy", max_length=4, batch_size=4, steps=steps, eval_every=10,
                     eval_size=8, checkpoint_every=10, log_every=10, target_error=-1, **train)
    Trainer(Run.create(run_dir, tc, memory_size=16, memory_width=6, controller_size=16)).run()
    return run_dir


def test_checkpoint_sweep_small(tmp_path):
    run_dir = tiny_copy_run(tmp_path / "run", 30, keep_checkpoints=5)
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "checkpoint_sweep.py"), "--small", "--out",
                          str(tmp_path), str(run_dir), "--points", "4,8", "--select", "6",
                          "-n", "8", "--max-heldout", "1000", "--name", "tiny"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "checkpoints-tiny_small.json").read_text())
    table = (tmp_path / "checkpoints-tiny_small.md").read_text()
    assert [row["step"] for row in result["rows"]] == [10, 20, 30]
    assert all(len(row["points"]) == 2 and "select_mean_bits" in row for row in result["rows"])
    best = min(row["select_mean_bits"] for row in result["rows"])
    chosen = next(r for r in result["rows"] if r["step"] == result["chosen_step"])
    assert chosen["select_mean_bits"] == best and "**chosen**" in table
    # a requirement no checkpoint of a 30-step run meets (0.1 bits/seq at length 4): none chosen
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "checkpoint_sweep.py"), "--small", "--out",
                          str(tmp_path), str(run_dir), "--points", "4", "--select", "6",
                          "-n", "8", "--max-heldout", "1000", "--require", "3,4",
                          "--name", "tiny-required"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "checkpoints-tiny-required_small.json").read_text())
    table = (tmp_path / "checkpoints-tiny-required_small.md").read_text()
    assert result["require"] == ["3", "4"] and "chosen_step" not in result
    assert all(set(row["required_mean_bits"]) == {"3", "4"} and row["required_mean_bits"]["4"]
               > 0.1 for row in result["rows"])
    assert "none qualified" in table and "| required: 4 |" in table and "**chosen**" not in table


def test_copy_failures_classifies_the_two_ways_copy_fails_at_length_1000():
    from benchmarks.copy_failures import classify, first_row_rewritten, read_moved_at

    length = 10
    parked = np.full(length + 1, 3)
    assert classify(np.zeros(length), parked, length) is None
    first = np.zeros(length)
    first[0] = 2
    assert classify(first, parked, length) == "first outputs"
    late = np.zeros(length)
    late[6] = 1
    assert classify(late, parked, length) == "other"
    moved = parked.copy()
    moved[7:] = 4  # left its row at input step 7: every output one row off
    assert read_moved_at(moved, length) == 7 and read_moved_at(parked, length) is None
    assert classify(np.full(length, 4), moved, length) == "read moved"
    # moves before the head settles do not count
    settling = parked.copy()
    settling[:2] = [0, 1]
    assert read_moved_at(settling, length) is None
    assert first_row_rewritten(np.array([1, 2, 1, 0, 127]), 5)
    assert not first_row_rewritten(np.array([1, 2, 3, 4, 5]), 5)


def test_copy_failures_zero_run_sequences_are_copies_with_one_blank_run():
    from benchmarks.copy_failures import with_zero_run
    from ntm.contract.tasks import CopyTask

    task = CopyTask()
    inputs, targets, mask = with_zero_run(task, np.random.default_rng(0), 40, 3)
    items = inputs[:40, :8]
    blank = ~items.any(axis=1)
    assert list(np.nonzero(blank)[0]) == [20, 21, 22]  # only the run, in the middle
    np.testing.assert_array_equal(targets[41:], items)  # still a copy of what came in
    assert inputs[40, 8] == 1 and mask.sum() == 40


def test_copy_failures_small(tmp_path):
    run_dir = tiny_copy_run(tmp_path / "run", 10)
    result, table = run_small("copy_failures", tmp_path, str(run_dir))
    (row,) = result["rows"]
    assert row["length"] == 12 and row["sequences"] == 4 and row["memory_rows"] == 16
    imperfect = round(4 * (1 - row["perfect_fraction"]))
    assert sum(row["kinds"].values()) == imperfect
    assert 0 <= row["first_row_rewritten"] <= 4 and table.startswith("# Copy: how runs fail")
    (probe,) = row["zero_runs"]
    assert (probe["zeros"], probe["length"], probe["sequences"]) == (2, 12, 4)
    assert 0 <= probe["read_moved"] <= 4 and 0 <= probe["failed"] <= 4 and "| K = 2 |" in table
    for options, message in ((["--zero-runs", "2,x"], "comma-separated"),
                             (["--zero-runs", "0"], "at least 1"),
                             (["--zero-runs", "7"], "at most 6 zeros")):
        bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "copy_failures.py"), "--small", "--out",
                              str(tmp_path), str(run_dir), *options],
                             cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr[-500:]
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "copy_failures.py"), "--small", "--out",
                          str(tmp_path), str(tmp_path / "nothing")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr


def test_dispatch_floor_small(tmp_path):
    pytest.importorskip("onnx")
    result, table = run_small("dispatch_floor", tmp_path)
    assert set(result["chain"]) == {"loop 1", "loop 10", "unrolled 1", "unrolled 10"}
    assert result["us_per_node"] > 0 and result["floor_66_nodes_us_per_step"] > 0
    assert {row["variant"] for row in result["lstm"]} == {
        "export's cell (12 nodes)", "LSTM op, state [1, batch, units] (1 node)",
        "LSTM op in Unsqueeze/Squeeze (6 nodes)"}  # each checked equal to the cell first
    assert "us per Loop iteration" in table


def test_fused_kernel_small(tmp_path, kernel_library):
    result, table = run_small("fused_kernel", tmp_path)
    assert result["parity"]["passed"] and result["matmul_gflops"] > 0
    assert [r["case"] for r in result["speed"]] == ["copy20", "copy20"]
    assert all(r["fused_ms"] > 0 and r["standard_ms"] > 0 for r in result["speed"])
    assert table.startswith("# The fused kernel")


def test_grpc_floor_small(tmp_path):
    pytest.importorskip("tritonclient.grpc")
    result, table = run_small("grpc_floor", tmp_path)
    rows = result["rows"]
    assert set(rows) == {"bare grpc.aio server (fixed answer)",
                         "ntm serve, gRPC (standard engine)"}
    assert all(r["errors"] == 0 and r["requests_per_s"] > 0 for r in rows.values())
    assert all(r["server_cpu_ms_per_request"] > 0 for r in rows.values())
    assert result["model_ms_per_sequence"] > 0
    assert table.startswith("# The floor under ntm serve's gRPC")


def test_kernel_builds_compares_builds_side_by_side(tmp_path, kernel_library):
    import shutil

    copy = tmp_path / "copy" / "libntm_ops.so"  # a second build: the same file elsewhere
    copy.parent.mkdir()
    shutil.copy(kernel_library, copy)
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "kernel_builds.py"),
                          str(kernel_library), str(copy), "--seconds", "0.2"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "copy 20, batch 1, 128 rows", "copy 20, batch 64, 128 rows",
        "copy 1000, batch 1, 1024 rows"]
    assert all(line.count("x)") == 2 for line in lines)
    missing = subprocess.run([sys.executable, str(REPO / "benchmarks" / "kernel_builds.py"),
                              str(tmp_path / "none.so")], capture_output=True, text=True)
    assert missing.returncode != 0 and "no such library" in missing.stderr


def test_heldout_curves_compares_runs_span_by_span(tmp_path):
    """Spans average the trainer's own evaluations; a resumed step's later line wins, a line
    cut short by a kill is skipped, and the table stops at the last step both runs reached."""
    def write_run(name: str, lines: list[str]) -> Path:
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        return run_dir

    a = write_run("a", [json.dumps({"step": s, "eval_bits_per_seq": v})
                        for s, v in ((2, 10.0), (4, 8.0), (6, 6.0), (8, 4.0))]
                  + [json.dumps({"step": s, "loss": math.log(2) * 20}) for s in (1, 3, 5, 7)]
                  + [json.dumps({"step": 4, "eval_bits_per_seq": 9.0}), '{"step": 9'])
    b = write_run("b", [json.dumps({"step": s, "eval_bits_per_seq": 1.0}) for s in (2, 4, 6)])
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "heldout_curves.py"),
                          "--name", "tiny", "--span", "4", "--out", str(tmp_path),
                          f"first={a}", f"second run={b}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "tiny.json").read_text())
    assert result["until"] == 4  # b reached step 6: one whole span of 4
    assert result["runs"]["first"]["heldout_bits"] == [9.5]  # (10 + 9) / 2: step 4 rewritten
    assert result["runs"]["first"]["training_bits"] == [pytest.approx(20.0)]
    assert result["runs"]["second run"]["training_bits"] == [None]
    table = (tmp_path / "tiny.md").read_text()
    assert "| 1-4 | 9.5 | 1.0 | 20.0 | - |" in table
    command = table.splitlines()[2].strip("`")  # the command, as a shell would split it
    assert shlex.split(command)[-2:] == [f"first={a}", f"second run={b}"]
    since = subprocess.run([sys.executable, str(REPO / "benchmarks" / "heldout_curves.py"),
                            "--name", "later", "--span", "2", "--since", "4", "--out",
                            str(tmp_path), f"first={a}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert since.returncode == 0, since.stderr
    later = json.loads((tmp_path / "later.json").read_text())
    assert later["runs"]["first"]["heldout_bits"] == [6.0, 4.0]  # steps 5-6, 7-8 only
    assert "| 5-6 | 6.0 |" in (tmp_path / "later.md").read_text()
    assert "--since 4" in (tmp_path / "later.md").read_text()
    refused = subprocess.run([sys.executable, str(REPO / "benchmarks" / "heldout_curves.py"),
                              "--name", "x", "--out", str(tmp_path), f"first{a}"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "expected LABEL=RUN_DIR" in refused.stderr
