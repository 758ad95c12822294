"""benchmarks/paper.py: the NTM against the LSTM baseline, round-robin in slices, resumable."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import paper

REPO = Path(__file__).resolve().parents[1]


def run_paper(tmp_path: Path, *options: str, timeout: int = 600) -> tuple[dict, str, str]:
    """benchmarks/paper.py --small into tmp_path (its working directory too) -> (its JSON, its
    Markdown, its output)."""
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "paper.py"), "--small",
                          "--out", str(tmp_path), "--runs-root", str(tmp_path / "runs"),
                          *options], cwd=tmp_path, capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    return (json.loads((tmp_path / "paper_small.json").read_text()),
            (tmp_path / "paper_small.md").read_text(), run.stdout)


def slices(output: str) -> list[tuple[str, int]]:
    """(run, target step) of every slice trained, in order, from the benchmark's output."""
    return [(key, int(step)) for key, step in
            re.findall(r"^(\S+): (?:training|resuming at step \d+), to step (\d+)", output, re.M)]


def small_plan(tmp_path: Path) -> paper.Plan:
    args = argparse.Namespace(small=True, tasks=None, runs_root=tmp_path, slice=4000,
                              budget=None, jobs=1)
    return paper.make_plan(args)


def test_small_trains_both_networks_round_robin_and_measures_the_papers_costs(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("matplotlib")
    result, table, output = run_paper(tmp_path)
    keys = ["copy-ntm", "copy-lstm", "ngrams-ntm", "ngrams-lstm"]
    # Every run gets its slice before any gets a second: the curves grow together.
    assert slices(output) == [(k, 10) for k in keys] + [(k, 20) for k in keys]
    assert [r["key"] for r in result["runs"]] == keys
    for row in result["runs"]:
        assert (row["step"], row["sequences"], row["status"]) == (20, 80, "done: budget")
        assert row["seconds_per_step"] > 0 and row["failure"] is None
        env, command = row["command"].split("ntm train ")
        assert command.startswith(f"--task {row['task']} --model {row['model']}")
        assert env == ("TF_ENABLE_ONEDNN_OPTS=1 " if row["model"] == "lstm" else "")
    # N-grams: the paper's cost in bits at every checkpoint, beside the optimal estimator's on
    # the same sequences (so the same for both networks at every point).
    for key in ("ngrams-ntm", "ngrams-lstm"):
        c = result["curves"][key]
        assert c["x"] == [20, 40, 60, 80] and len(c["y"]) == 4 and "train_x" not in c
        assert len(set(c["optimal"])) == 1 and all(y > c["optimal"][0] for y in c["y"])
    assert result["curves"]["ngrams-ntm"]["optimal"] == result["curves"]["ngrams-lstm"]["optimal"]
    assert result["curves"]["copy-lstm"]["x"] == [20, 40, 60, 80]  # held-out every 5 steps
    copy = result["copy"]
    assert copy["steps"] == {"ntm": 20, "lstm": 20}
    outputs = json.loads((tmp_path / "runs" / "paper-state.json").read_text())["copy"]["outputs"]
    for model in ("ntm", "lstm"):
        assert [r["length"] for r in copy["tables"][model]["rows"]] == [2, 3, 6]
        assert [len(outputs[model][str(n)]["outputs"]) for n in (2, 3, 6)] == [2, 3, 6]
    images = tmp_path / "paper-small-images"
    assert sorted(p.name for p in images.iterdir()) == [
        "paper-copy-generalisation.png", "paper-copy-outputs.png", "paper-copy.png",
        "paper-ngrams.png"]
    assert table.startswith("# The paper's comparison") and "| ngrams | LSTM | 80 |" in table

    # Again: everything is at its budget, nothing is retrained or measured again.
    checkpoints = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/checkpoints/*")}
    again, _, output = run_paper(tmp_path)
    assert slices(output) == [] and "measuring" not in output
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/checkpoints/*")} \
        == checkpoints
    assert again["runs"] == result["runs"] and again["curves"] == result["curves"]


@pytest.mark.slow
def test_a_killed_benchmark_stops_its_trainer_and_resumes(tmp_path):
    """SIGKILL to the benchmark mid-slice: the trainer gets SIGTERM, checkpoints and stops;
    the same command then finishes every run at its budget."""
    pytest.importorskip("tensorflow")
    cmd = [sys.executable, str(REPO / "benchmarks" / "paper.py"), "--small", "--out",
           str(tmp_path), "--runs-root", str(tmp_path / "runs"), "--tasks", "copy"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics = tmp_path / "runs" / "copy-lstm" / "metrics.jsonl"
    deadline = time.time() + 240
    while not metrics.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the benchmark finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    deadline = time.time() + 60
    while trainers_of(tmp_path) and time.time() < deadline:
        time.sleep(0.2)
    assert not trainers_of(tmp_path), "the trainer went on training after the benchmark died"
    result, _, _ = run_paper(tmp_path, "--tasks", "copy")
    # --tasks trains those runs only; the report still lists every run (ngrams: never started)
    assert [(r["key"], r["step"]) for r in result["runs"]] == [
        ("copy-ntm", 20), ("copy-lstm", 20), ("ngrams-ntm", 0), ("ngrams-lstm", 0)]


@pytest.mark.slow
def test_jobs_train_runs_at_once_and_a_signal_stops_every_trainer(tmp_path):
    """--jobs 2: two trainers at work together; SIGTERM to the benchmark stops both and the
    benchmark (exit 130), and the same command then takes each run's slices in order to its
    budget."""
    pytest.importorskip("tensorflow")
    # a relative --runs-root: where the benchmark was started, not where its trainers run
    cmd = [sys.executable, str(REPO / "benchmarks" / "paper.py"), "--small", "--out", ".",
           "--runs-root", "runs", "--tasks", "copy", "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    started = []
    for line in proc.stdout:  # both trainers start before either has ended
        started += [key for key, _ in slices(line)]
        if len(started) == 2:
            break
    assert started == ["copy-ntm", "copy-lstm"]
    summaries = [tmp_path / "runs" / key / "summary.json" for key in started]
    deadline = time.time() + 240
    while len(trainers_of(tmp_path)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert len(trainers_of(tmp_path)) == 2 and not any(p.exists() for p in summaries)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, rest[-2000:]
    assert "run the same command again to resume" in rest and not trainers_of(tmp_path)

    result, _, output = run_paper(tmp_path, "--tasks", "copy", "--jobs", "2")
    done = slices(output)
    for key in ("copy-ntm", "copy-lstm"):
        mine = [step for k, step in done if k == key]
        assert mine == sorted(mine) and mine[-1] == 20
    progress = [line for line in output.splitlines() if "| loss " in line]
    assert progress and all(line.startswith(("copy-ntm | step ", "copy-lstm | step "))
                            for line in progress)  # each trainer's lines under its name
    assert [(r["key"], r["step"]) for r in result["runs"]][:2] == [("copy-ntm", 20),
                                                                  ("copy-lstm", 20)]


def test_children_run_at_once_and_their_lines_carry_their_names(tmp_path, capfd):
    """Each child waits for the other's file: run one after the other, neither would end."""
    stopper = paper.Stopper()
    wait_for = ("import pathlib, sys, time\n"
                "mine, other = map(pathlib.Path, sys.argv[1:])\n"
                "mine.touch(); deadline = time.time() + 60\n"
                "while not other.exists() and time.time() < deadline: time.sleep(0.01)\n"
                "print('saw', other.name if other.exists() else 'nothing'); "
                "sys.exit(0 if other.exists() else 3)\n")
    a, b = tmp_path / "a", tmp_path / "b"
    stopper.start("first", [sys.executable, "-c", wait_for, str(a), str(b)])
    stopper.start("second", [sys.executable, "-c", wait_for, str(b), str(a)])
    ended = dict([stopper.wait(["first", "second"]), stopper.wait(["first", "second"])])
    assert ended == {"first": 0, "second": 0} and not stopper.children
    out = capfd.readouterr().out.splitlines()
    assert sorted(out) == ["first | saw b", "second | saw a"]
    # a child stopped from outside stops the benchmark and the others with it
    stopper.start("killed", [sys.executable, "-c", "import os, signal; "
                                                 "os.kill(os.getpid(), signal.SIGKILL)"])
    stopper.start("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
    with pytest.raises(paper.Interrupted, match="killed stopped"):
        stopper.wait(["killed", "sleeper"])
    assert not stopper.children


def trainers_of(root: Path) -> list[int]:
    """Pids of live processes whose command line names ``root`` (the benchmark's trainers)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if str(root) in cmdline and "train" in cmdline and stat.split(") ")[1][0] != "Z":
            pids.append(int(proc.name))
    return pids


def test_a_run_started_with_other_options_is_refused_or_restarted_when_asked(tmp_path):
    plan = small_plan(tmp_path)
    run, other = plan.runs[0], plan.runs[1]
    old = {"train_args": ["--task", "copy"], "failure": None}
    same = {"train_args": list(other.train_args), "failure": None}
    paper.save_state(plan, {"runs": {run.key: old, other.key: same}, "ngrams": {},
                            "copy": {"steps": {"ntm": 10}}})
    for r in (run, other):
        r.run_dir.mkdir(parents=True)
        (r.run_dir / "summary.json").write_text('{"step": 10}')
    with pytest.raises(SystemExit, match=f"{run.key} was started with .*--restart {run.key}"):
        paper.load_state(plan)
    with pytest.raises(SystemExit, match="--restart: no run copy-gru"):
        paper.load_state(plan, restart=["copy-gru"])

    state = paper.load_state(plan, restart=[run.key, other.key])
    # the changed run starts again, its directory kept aside; the unchanged one goes on
    assert not run.run_dir.exists() and paper.current_step(run) == 0
    aside = tmp_path / "set-aside" / f"{run.key}-1"
    assert (aside / "summary.json").read_text() == '{"step": 10}'
    assert state["runs"] == {other.key: same} and state["copy"] is None
    assert json.loads(plan.state_path.read_text())["runs"] == {other.key: same}
    assert paper.current_step(other) == 10
    assert paper.load_state(plan, restart=[run.key, other.key]) == state  # a repeat: no-op
    assert sorted(p.name for p in (tmp_path / "set-aside").iterdir()) == [f"{run.key}-1"]


def test_the_run_furthest_behind_goes_next_and_finished_ones_never(tmp_path):
    plan = small_plan(tmp_path)
    state = {"runs": {}, "ngrams": {}, "copy": None}
    steps = {"copy-ntm": (10, "steps"), "copy-lstm": (10, "steps"), "ngrams-ntm": (5, "target"),
             "ngrams-lstm": (10, "interrupted")}
    for run in plan.runs:
        run.run_dir.mkdir(parents=True)
        step, stopped = steps[run.key]
        (run.run_dir / "summary.json").write_text(json.dumps({"step": step, "stopped": stopped}))
    assert paper.next_run(plan, state).key == "copy-ntm"  # the plan's order among equals
    (plan.run("copy-ntm").run_dir / "summary.json").write_text('{"step": 20, "stopped": "steps"}')
    assert paper.next_run(plan, state).key == "copy-lstm"
    state["runs"]["copy-lstm"] = {"failure": "ntm train exited with code 1"}
    assert paper.next_run(plan, state).key == "ngrams-lstm"
    assert paper.next_run(plan, state, busy={"ngrams-lstm"}) is None  # it trains already
    copy_only = dataclasses.replace(plan, training=frozenset({"copy"}))
    assert paper.next_run(copy_only, state) is None  # ngrams-lstm waits: not asked to train


def test_time_left_with_jobs_shares_the_machine_but_never_splits_a_run():
    assert paper.time_with_jobs([3600, 3600, 3600, 3600], 2) == 7200  # the machine's share
    assert paper.time_with_jobs([36000, 600, 600], 2) == 36000  # one run alone takes longer
    assert paper.time_with_jobs([5000], 1) == 5000 and paper.time_with_jobs([], 2) == 0
    rows = [{"task": "copy", "model": "ntm", "sequences": 4000, "budget_sequences": 8000,
             "status": "50% of budget", "train_seconds": 60, "seconds_per_step": 0.1,
             "heldout_bits_per_seq": 1.0, "first_below_threshold": None,
             "seconds_to_budget": left} for left in (7200, 3600, None)]
    lines = paper.status_table({"runs": rows, "cpu_count": 2})
    assert lines[-1].startswith("Time left to every budget at each run's s/step so far: 3.0 h "
                                "one run after another; 2.0 h with `--jobs 2`")
    assert "(runs not yet started not counted)" in lines[-1]


def test_a_report_never_writes_over_a_record_the_same_runs_got_further_with(tmp_path, capsys):
    """Runs whose folders were lost start again from step 0: their report goes apart, and the
    record (results, page) stays until they pass it or --replace-record asks."""
    plan = small_plan(tmp_path / "runs")
    state = {"runs": {}, "ngrams": {}, "copy": None}
    out = tmp_path / "results"
    args = argparse.Namespace(out=out, images=tmp_path / "images", doc=None,
                              replace_record=False)
    paper.report(plan, state, args, figures=False)  # no record yet: written where asked
    fresh = json.loads((out / "paper_small.json").read_text())
    assert [r["sequences"] for r in fresh["runs"]] == [0, 0, 0, 0]

    record = json.loads(json.dumps(fresh))
    record["runs"][0]["sequences"] = 40_000
    (out / "paper_small.json").write_text(json.dumps(record))
    paper.report(plan, state, args, figures=False)
    assert json.loads((out / "paper_small.json").read_text()) == record  # kept
    apart = json.loads((plan.runs_root / "report" / "paper_small.json").read_text())
    assert apart["runs"][0]["sequences"] == 0
    assert "copy-ntm (40,000 sequences on record, 0 here)" in capsys.readouterr().out

    paper.report(plan, state, argparse.Namespace(**{**vars(args), "replace_record": True}),
                 figures=False)
    assert json.loads((out / "paper_small.json").read_text())["runs"][0]["sequences"] == 0


def test_what_counts_as_the_same_run_behind_its_record():
    row = {"key": "copy-ntm", "command": "ntm train --task copy --seed 1 --out runs/paper/x",
           "sequences": 4000, "status": "0.4% of budget"}
    record = {"runs": [{**row, "sequences": 8000}]}
    assert paper.runs_behind_record(record, {"runs": [row]}) == [
        "copy-ntm (8,000 sequences on record, 4,000 here)"]
    moved = {**row, "command": "ntm train --task copy --seed 1 --out /elsewhere/x"}
    assert paper.runs_behind_record(record, {"runs": [moved]})  # where it lives: the same run
    other = {**row, "command": "ntm train --task copy --seed 2 --out runs/paper/x"}
    assert paper.runs_behind_record(record, {"runs": [other]}) == []  # options changed
    done = {**row, "status": "done: target at step 1000"}
    assert paper.runs_behind_record(record, {"runs": [done]}) == []  # stopped sooner, finished
    assert paper.runs_behind_record(None, {"runs": [row]}) == []


def test_the_paper_settings_of_each_network():
    """Table 3's LSTM sizes, Table 2's priority-sort NTM, and nothing but the network apart."""
    plan = paper.make_plan(argparse.Namespace(small=False, tasks=None, runs_root=Path("r"),
                                              slice=4000, budget=None, jobs=1))
    args = {run.key: run.train_args for run in plan.runs}
    assert len(args) == 10 and plan.slice_steps == 1000
    units = {key.rsplit("-", 1)[0]: a[a.index("--lstm-units") + 1]
             for key, a in args.items() if key.endswith("-lstm")}
    assert units == {"copy": "256", "repeat-copy": "512", "recall": "256", "ngrams": "128",
                     "priority-sort": "128"}
    sort = args["priority-sort-ntm"]
    for flag, value in (("--controller", "feedforward"), ("--read-heads", "8"),
                        ("--write-heads", "8"), ("--controller-size", "512"),
                        ("--initial-memory", "learned")):
        assert sort[sort.index(flag) + 1] == value
    for key, a in args.items():
        assert "--lr" not in a and "--batch-size" not in a  # one optimiser for both networks
        assert a[a.index("--restart-at") + 1] == "0" and a[a.index("--seed") + 1] == "1"
    budgets = {run.key: run.budget_sequences for run in plan.runs}
    assert budgets["repeat-copy-lstm"] == 500_000 and budgets["copy-ntm"] == 1_000_000
    assert {run.env["TF_ENABLE_ONEDNN_OPTS"] for run in plan.runs if run.model == "lstm"} == {"1"}


def test_an_unreadable_ngrams_checkpoint_is_left_out_of_the_curve(tmp_path):
    plan = small_plan(tmp_path)
    run = plan.run("ngrams-ntm")
    state = {"runs": {}, "copy": None, "ngrams": {run.key: {
        "10": {"step": 10, "sequences": 40, "cost_bits": 12.0, "optimal_bits": 10.0},
        "5": {"step": 5, "error": "keeps no checkpoint of step 5"},
        "15": {"step": 15, "sequences": 60, "cost_bits": 11.5, "optimal_bits": 10.0}}}}
    assert [p["step"] for p in paper.measured_points(state, run)] == [10, 15]
    assert paper.curve(plan, run, state)["x"] == [40, 60]


def test_priority_sort_is_also_drawn_as_training_cross_entropy(tmp_path):
    """The paper's priority-sort axis reaches above the 128 bits a sequence can get wrong, so
    its cost is cross-entropy: the training losses in bits (median of the last logs) are kept
    and drawn for it, and for no task whose axis fits wrong bits."""
    import math

    pytest.importorskip("matplotlib")
    assert [t.name for t in paper.TASKS.values() if t.cross_entropy_figure] == ["priority-sort"]
    losses = [{"loss": v * math.log(2)} for v in [90.0] * 10 + [50.0, 60.0, 70.0]]
    assert paper.training_cost_bits(losses, logs=3) == pytest.approx(60.0)
    assert paper.training_cost_bits(losses[:2], logs=3) == pytest.approx(90.0)
    assert paper.training_cost_bits([]) is None

    plan = dataclasses.replace(small_plan(tmp_path), small=False)
    curves = {f"priority-sort-{model}": {"x": [], "y": [], "train_x": [4, 8, 12],
                                         "train_y": [60.0, 50.0, 40.0],
                                         "train_cost": [120.0, 100.0, 90.0]}
              for model in paper.MODELS}
    written = paper.draw_cross_entropy(plan, {"curves": curves}, paper.TASKS["priority-sort"],
                                       tmp_path)
    assert [p.name for p in written] == ["paper-priority-sort-cross-entropy.png"]
    assert written[0].read_bytes().startswith(b"\x89PNG")
    del curves["priority-sort-ntm"]["train_cost"], curves["priority-sort-lstm"]["train_cost"]
    assert paper.draw_cross_entropy(plan, {"curves": curves}, paper.TASKS["priority-sort"],
                                    tmp_path / "none") == []
