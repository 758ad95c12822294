"""Benchmark: the paper's comparison, the NTM against the LSTM baseline on all five tasks.

Graves et al. (2014, §4) draw, for copy, repeat copy, associative recall, dynamic N-grams and
priority sort, the cost per sequence against sequences seen of the NTM and of an LSTM network
(Figures 3, 7, 10, 13, 17), and the copies of both past the training length (Figures 4, 5).
This trains the ten runs (five tasks x two networks, seed 1 each) with ``ntm train`` and draws
the same comparisons from what they log:

- ``results/paper.{json,md}``: per run, sequences seen, training seconds, seconds per step, the
  latest held-out cost, where it stands against its budget (rewritten after every slice);
- ``docs/images/paper-TASK.png``: the learning curves, NTM against LSTM, linear as the paper
  draws them, on the paper's y range (what lies above it is cut off, as in the paper);
- ``docs/images/paper-copy-generalisation.png`` (bits/seq against length, ``ntm evaluate``'s
  code) and ``paper-copy-outputs.png`` (targets and outputs at lengths 10-120, as Figures 4-5);
- the status section of ``docs/paper.md`` (between its two ``paper.py`` markers).

What is measured. Copy, repeat copy, recall and priority sort: the trainer's held-out bits/seq
(wrongly thresholded bits per sequence, its fixed held-out set; ``metrics.jsonl``). N-grams: the
paper's cost, bits of cross-entropy per 200-bit sequence beside the optimal Bayesian estimator's,
measured by ``ntm evaluate``'s code (the task's ``measures``) on every checkpoint the run keeps
(100 fixed sequences), since the trainer's held-out metric for N-grams is thresholded bits; its
training cost (loss / ln 2, the same quantity on the training batches) is drawn faint behind.

How it trains. Each run has a budget in sequences: the paper's x axis (one million sequences;
repeat copy 500k). Runs advance in slices (``--slice`` sequences, default 4,000: 1,000 steps at
batch 4) by ``ntm train --resume --steps S``: the run furthest behind goes next, so the ten
curves grow together, round-robin. Each trainer takes one thread; ``--jobs N`` trains N runs at
once (one per core), each output line of a trainer under its run's name. A run is done at its
budget, or when the trainer stops at its target (held-out <= 0.01 bits/seq three times
running). Every run uses the project's optimiser (RMSProp lr 2e-4, momentum 0.9, batch 4;
priority sort, both networks: the paper's 3e-5), so a comparison changes the network and
nothing else; restarts and copy's polish are off (the paper trains each network once, on the
plain task). The NTM is the paper's (memory 128 x 20, LSTM controller 100, one head pair); for
priority sort its Table 2 model (feed-forward controller of 512 units, 8 read and 8 write
heads, and a learned initial memory, the paper's "learned biases"). The LSTM is Table 3's: 3
layers of 256 units (copy, recall), 512 (repeat copy), 128 (N-grams, priority sort); it trains
with oneDNN on (``TF_ENABLE_ONEDNN_OPTS=1``), measured 1.5x faster per step for 3 x 256 and 5x
for 3 x 512 on this machine; the NTM without (slower for it).

Resumable: the runs live in RUNS_ROOT/TASK-MODEL, the measurements in RUNS_ROOT/paper-state.json.
Stop it (Ctrl-C or SIGTERM: the trainers checkpoint first; even SIGKILL: the trainers then get
SIGTERM) and run the same command again: every run continues from its last checkpoint. One
process at a time (a lock in RUNS_ROOT); a changed run command is refused, not mixed in, unless
``--restart RUN`` asks for that run to start again (its old directory moved to
RUNS_ROOT/set-aside). Runs whose folders were lost start again from step 0; while the report
on record got further with them, it is kept and theirs goes to RUNS_ROOT/report
(``--replace-record`` writes over it).

    python benchmarks/paper.py                      # the ten runs, for days (docs/paper.md)
    python benchmarks/paper.py --report-only        # redraw the figures and tables, no training
    python benchmarks/paper.py --tasks copy,recall  # train these only; report every run
    python benchmarks/paper.py --jobs 2             # two runs at once (two cores)
    python benchmarks/paper.py --small              # two tasks, tiny models, < 1 minute (tests)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.results_io import read_results, write_results  # noqa: E402
from benchmarks.seeds import code_version, read_metrics  # noqa: E402
from ntm.files import atomic_file, write_json_atomic  # noqa: E402
from ntm.training.runs import has_checkpoint, read_summary  # noqa: E402

SEED = 1  # one seed per run: seed 1 is the first of the seed sweep's, chosen before any result
BATCH_SIZE = 4  # ntm train's default; a budget in sequences is steps x this
EVAL_DATA_SEED = 1234  # ntm evaluate's default: both networks see the same sequences
NGRAMS_LENGTH = 200  # bits per N-grams evaluation sequence: the paper's
NGRAMS_SEQUENCES = 100
COPY_POINTS = (10, 20, 30, 50, 120)  # the lengths of the paper's Figures 4 (NTM) and 5 (LSTM)
COPY_SEQUENCES = 50
THRESHOLD = 0.1  # bits/seq: "near zero", as the seed sweep counts convergence
COST_LOGS = 20  # training losses (one batch each) whose median is a run's training cost
STATUS_BEGINS = "<!-- paper.py status begins -->"
STATUS_ENDS = "<!-- paper.py status ends -->"
MODELS = ("ntm", "lstm")
MODEL_NAMES = {"ntm": "NTM", "lstm": "LSTM"}


@dataclass(frozen=True)
class PaperTask:
    """One task of the paper's comparison: its figure, axes and networks."""

    name: str
    figure: int
    x_max: int  # the paper's x axis, in sequences: the default budget
    y_range: tuple[float, float]  # the paper's y axis, cost per sequence in bits
    lstm_units: int  # Table 3 (3 layers each)
    ntm_args: tuple[str, ...] = ()  # beyond the NTM's defaults (the paper's LSTM-NTM)
    paper_says: str = ""
    both_args: tuple[str, ...] = ()  # for both networks, beyond the common ones
    # The paper's y axis rises above the most bits a sequence can get wrong (priority sort: 140
    # against 128 target bits), so there its cost is cross-entropy: a second figure draws the
    # training cross-entropy in bits, the quantity its curves can be read against.
    cross_entropy_figure: bool = False


TASKS = {t.name: t for t in (
    PaperTask("copy", 3, 1_000_000, (0, 10), 256,
              # copy's default polish trains on more than the plain task; the paper's NTM did not
              ("--write-entropy", "0", "--memory-noise", "0", "--blank-runs", "0"),
              "NTM (either controller) learns much faster than LSTM and converges to a lower "
              "cost; LSTM-NTM about 0.1 bits/seq after about 100k sequences"),
    PaperTask("repeat-copy", 7, 500_000, (0, 200), 512, (),
              "NTM learns much faster than LSTM, but both solve it perfectly"),
    PaperTask("recall", 10, 1_000_000, (0, 20), 256, (),
              "NTM near zero cost within about 30k episodes; LSTM not at zero after a million"),
    PaperTask("ngrams", 13, 1_000_000, (130, 160), 128, (),
              "NTM a small but significant advantage over LSTM, never quite at the optimal "
              "estimator's cost"),
    PaperTask("priority-sort", 17, 1_000_000, (0, 140), 128,
              # and the paper's learned initial memory ("learned biases"): the same run learned
              # faster per step with it than from a constant one (docs/training.md#initial-memory)
              ("--controller", "feedforward", "--controller-size", "512", "--read-heads", "8",
               "--write-heads", "8", "--initial-memory", "learned"),
              "NTM (either controller) substantially outperforms LSTM",
              # the paper's rate for both networks: at the default 2e-4 the NTM's training
              # collapsed at step ~1,650 (its outputs went to 0.5 everywhere and stayed)
              ("--learning-rate", "3e-5"), cross_entropy_figure=True),
)}

# Off for both networks: a restart re-initialises a run still above 1 bit/seq (recall's default
# at step 8,000), which would cut a slow learner's curve short again and again.
COMMON_ARGS = ("--seed", str(SEED), "--restart-at", "0", "--threads", "1")
NGRAMS_ARGS = ("--checkpoint-every", "500", "--keep-checkpoints", "4")  # two points per slice

# --small: two tasks, tiny networks, short sequences, two slices of 10 steps per run.
SMALL_TASKS = ("copy", "ngrams")
SMALL_ARGS = {
    "common": ("--eval-every", "5", "--eval-size", "8", "--log-every", "5"),
    "copy": ("--max-length", "3"),
    "ngrams": ("--min-length", "12", "--max-length", "12", "--checkpoint-every", "5"),
    "ntm": ("--memory-width", "4", "--controller-size", "8"),
    "ntm-memory": {"copy": ("--memory-size", "8"), "ngrams": ("--memory-size", "40")},
    "lstm": ("--lstm-layers", "1", "--lstm-units", "8"),
}
SMALL_SLICE_STEPS = 10
SMALL_BUDGET_STEPS = 20
SMALL_POINTS = (2, 3, 6)
SMALL_NGRAMS_LENGTH = 12


class Interrupted(Exception):
    """The benchmark was asked to stop; the run in training has checkpointed."""


def display(path: Path) -> Path:
    """``path`` relative to the repository when inside it (commands and tables read as typed
    there), else as it is."""
    try:
        return Path(path).resolve().relative_to(REPO)
    except ValueError:
        return Path(path)


# -- the plan ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperRun:
    """One of the ten runs: a task, a network, its ``ntm train`` options and its budget."""

    task: str
    model: str
    train_args: tuple[str, ...]  # everything but --out, --steps and --resume
    budget_steps: int
    run_dir: Path

    @property
    def key(self) -> str:
        return f"{self.task}-{self.model}"

    @property
    def budget_sequences(self) -> int:
        return self.budget_steps * BATCH_SIZE

    def command(self) -> str:
        """The command a reader types for the whole run (the benchmark gives it in slices)."""
        env = [f"{k}={v}" for k, v in self.env.items() if v != "0"]
        return " ".join([*env, "ntm train", *self.train_args, "--steps", str(self.budget_steps),
                         "--out", str(display(self.run_dir))])

    @property
    def env(self) -> dict:
        """oneDNN for the LSTM's large matrix products (module docstring); not for the NTM."""
        return {"TF_ENABLE_ONEDNN_OPTS": "1" if self.model == "lstm" else "0"}


@dataclass(frozen=True)
class Plan:
    runs: tuple[PaperRun, ...]
    slice_steps: int
    runs_root: Path
    small: bool
    ngrams_length: int
    copy_points: tuple[int, ...]
    training: frozenset[str]  # the tasks whose runs train; the report covers every run
    jobs: int = 1  # runs training at once (each trainer uses one thread: --threads 1)

    @property
    def state_path(self) -> Path:
        return self.runs_root / "paper-state.json"

    def run(self, key: str) -> PaperRun:
        return next(r for r in self.runs if r.key == key)


def train_args(task: PaperTask, model: str, small: bool) -> tuple[str, ...]:
    args = ["--task", task.name, "--model", model, *COMMON_ARGS, *task.both_args]
    if model == "lstm":
        args += ["--lstm-units", str(task.lstm_units)]
    else:
        args += task.ntm_args
    if task.name == "ngrams":
        args += NGRAMS_ARGS
    if small:  # later options win: the tiny networks and sequences replace the paper's
        args += [*SMALL_ARGS["common"], *SMALL_ARGS.get(task.name, ()), *SMALL_ARGS[model],
                 *(SMALL_ARGS["ntm-memory"][task.name] if model == "ntm" else ())]
    return tuple(args)


def make_plan(args: argparse.Namespace) -> Plan:
    small = args.small
    everything = list(SMALL_TASKS if small else TASKS)
    names = args.tasks.split(",") if args.tasks else everything
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise SystemExit(f"--tasks: unknown {', '.join(unknown)} (the paper's: "
                         f"{', '.join(TASKS)})")
    if args.jobs < 1:
        raise SystemExit(f"--jobs: {args.jobs} is not a number of runs (1 or more)")
    # absolute: the trainers run in the repository, not where the benchmark was started
    root = Path(args.runs_root or REPO / "runs" / ("paper-small" if small else "paper"))
    root = root.absolute()
    slice_steps = SMALL_SLICE_STEPS if small else max(1, args.slice // BATCH_SIZE)
    runs = []
    for name in everything + [n for n in names if n not in everything]:
        task = TASKS[name]
        budget = (SMALL_BUDGET_STEPS if small else
                  (args.budget or task.x_max) // BATCH_SIZE)
        for model in MODELS:
            runs.append(PaperRun(name, model, train_args(task, model, small), budget,
                                 root / f"{name}-{model}"))
    return Plan(tuple(runs), slice_steps, root, small,
                SMALL_NGRAMS_LENGTH if small else NGRAMS_LENGTH,
                SMALL_POINTS if small else COPY_POINTS, frozenset(names), args.jobs)


# -- state: commands, failures, measurements --------------------------------------------------
def load_state(plan: Plan, restart=()) -> dict:
    """What earlier invocations recorded; exits when a run was started with other options
    (its directory cannot mix them) unless it is one of ``restart`` (run keys): such a run
    starts again from step 0 with the plan's options, its directory and measurements set aside
    first (``set_aside``). A run whose options did not change goes on either way."""
    state = {"runs": {}, "ngrams": {}, "copy": None}
    if plan.state_path.is_file():
        state.update(json.loads(plan.state_path.read_text()))
    unknown = [key for key in restart if key not in {r.key for r in plan.runs}]
    if unknown:
        raise SystemExit(f"--restart: no run {', '.join(unknown)} (the runs: "
                         f"{', '.join(r.key for r in plan.runs)})")
    for run in plan.runs:
        kept = state["runs"].get(run.key)
        if kept is None or kept["train_args"] == list(run.train_args):
            continue  # the same options: it goes on, so a repeated command still resumes
        if run.key in restart:
            set_aside(plan, run, state)
        else:
            raise SystemExit(f"{plan.state_path}: {run.key} was started with {kept['train_args']}"
                             f", not {list(run.train_args)}: --restart {run.key} starts it "
                             f"again with these, or choose another --runs-root")
    return state


def set_aside(plan: Plan, run: PaperRun, state: dict) -> None:
    """Move ``run``'s directory to RUNS_ROOT/set-aside/KEY-N (nothing trained is deleted) and
    forget what the state recorded of it, so it trains again from step 0."""
    if run.run_dir.exists():
        aside = plan.runs_root / "set-aside"
        aside.mkdir(parents=True, exist_ok=True)
        n = 1
        while (aside / f"{run.key}-{n}").exists():
            n += 1
        run.run_dir.rename(aside / f"{run.key}-{n}")
        print(f"{run.key}: set aside in {display(aside / f'{run.key}-{n}')}; it starts again",
              flush=True)
    state["runs"].pop(run.key, None)
    state["ngrams"].pop(run.key, None)
    if run.task == "copy":  # the generalisation table measured the run set aside
        state["copy"] = None
    save_state(plan, state)


def save_state(plan: Plan, state: dict) -> None:
    plan.runs_root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(plan.state_path, state)


@contextlib.contextmanager
def only_one(plan: Plan):
    """One benchmark process per runs root: a second would train the same run directories."""
    plan.runs_root.mkdir(parents=True, exist_ok=True)
    with open(plan.runs_root / "paper.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another benchmarks/paper.py is running on {plan.runs_root}") \
                from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- children: trainings and measurements ------------------------------------------------------
def _stop_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the benchmark dies, even by SIGKILL, so
    the trainer checkpoints and stops instead of training on unwatched."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Stopper:
    """The benchmark's children and SIGINT/SIGTERM: a signal is passed on to every child at
    work as one SIGTERM (a trainer checkpoints and stops); between children, the benchmark stops
    at the next safe point (after a report is written), never half-way through one. Each child
    runs in its own session (a Ctrl-C reaches the benchmark alone, which forwards it once), its
    output lines going to ours under its name, so the logs of runs trained at once stay apart."""

    def __init__(self):
        self.children: dict[str, subprocess.Popen] = {}
        self.codes: dict[str, int] = {}  # exit codes of ended children not yet waited for
        self.ended = threading.Condition()
        self.asked: list[int] = []
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.asked.append(signum)
        self._stop_children()

    def _stop_children(self) -> None:
        for child in list(self.children.values()):
            child.send_signal(signal.SIGTERM)  # a no-op for a child already ended

    def check(self) -> None:
        if self.asked:
            raise Interrupted("asked to stop")

    def start(self, name: str, cmd: list[str], env: dict | None = None) -> None:
        """Start ``cmd`` as the child ``name``; ``wait`` returns its exit code."""
        self.check()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("NTM_")}
        child_env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **(env or {})})
        child = subprocess.Popen(cmd, cwd=REPO, env=child_env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 errors="replace", start_new_session=True,
                                 preexec_fn=_stop_with_parent)
        self.children[name] = child
        threading.Thread(target=self._watch, args=(name, child), daemon=True).start()

    def _watch(self, name: str, child: subprocess.Popen) -> None:
        for line in child.stdout:
            print(f"{name} | {line}", end="", flush=True)
        code = child.wait()
        with self.ended:
            self.codes[name] = code
            self.ended.notify_all()

    def wait(self, names) -> tuple[str, int]:
        """The first of the children ``names`` to end -> (its name, its exit code);
        Interrupted when asked to stop or when it was stopped from outside (the others are
        then stopped too, and waited for: each checkpoints first)."""
        with self.ended:
            while not (ended := [n for n in names if n in self.codes]):
                self.ended.wait()
            name = ended[0]
            code = self.codes.pop(name)
        self.children.pop(name)
        if self.asked or code == 130 or code < 0:  # 130: ntm train was interrupted
            self.stop_all()
            raise Interrupted(f"{name} stopped (exit code {code})")
        return name, code

    def run(self, name: str, cmd: list[str], env: dict | None = None) -> int:
        """Run ``cmd`` to its end -> its exit code (other children go on meanwhile)."""
        self.start(name, cmd, env)
        return self.wait([name])[1]

    def stop_all(self) -> None:
        """SIGTERM to every child still at work, and wait until all have ended."""
        self._stop_children()
        with self.ended:
            while any(n not in self.codes for n in self.children):
                self.ended.wait()
            self.codes.clear()
        self.children.clear()


def current_step(run: PaperRun) -> int:
    """The step the run's last session ended at (0 before the first)."""
    return int(read_summary(run.run_dir).get("step", 0))


def is_done(run: PaperRun, state: dict) -> bool:
    """At its budget, stopped at the target, or failed."""
    if state["runs"].get(run.key, {}).get("failure"):
        return True
    summary = read_summary(run.run_dir)
    return summary.get("stopped") == "target" or summary.get("step", 0) >= run.budget_steps


def next_run(plan: Plan, state: dict, busy=()) -> PaperRun | None:
    """The unfinished run furthest behind (the plan's order among equals), of those not
    ``busy`` training: round-robin, and a restarted benchmark picks up the turn where it was."""
    pending = [r for r in plan.runs if r.task in plan.training and r.key not in busy
               and not is_done(r, state)]
    return min(pending, key=current_step) if pending else None


def start_slice(plan: Plan, run: PaperRun, state: dict, stopper: Stopper) -> None:
    """Start training ``run`` up to its next slice boundary (or its budget)."""
    step = current_step(run)
    target = min(run.budget_steps, (step // plan.slice_steps + 1) * plan.slice_steps)
    resume = has_checkpoint(run.run_dir)
    state["runs"].setdefault(run.key, {"train_args": list(run.train_args), "failure": None})
    save_state(plan, state)
    print(f"{run.key}: {'resuming at step ' + str(step) if resume else 'training'}, to step "
          f"{target} of {run.budget_steps}", flush=True)
    cmd = [sys.executable, "-m", "ntm.cli.main", "train", *run.train_args, "--steps",
           str(target), "--out", str(run.run_dir), *(["--resume"] if resume else [])]
    stopper.start(run.key, cmd, run.env)


def end_slice(plan: Plan, run: PaperRun, state: dict, code: int) -> None:
    """A trainer failure is recorded, and the run is not trained again."""
    if code != 0:
        state["runs"][run.key]["failure"] = f"ntm train exited with code {code} at step " \
                                            f"{current_step(run)} (its message is in the log)"
        save_state(plan, state)


def train(plan: Plan, state: dict, stopper: Stopper, args: argparse.Namespace) -> bool:
    """Train slices until every run asked for is done, ``plan.jobs`` runs at once, each the
    unfinished run furthest behind; measure and redraw once a turn -> whether the last report
    drew the figures."""
    active: dict[str, PaperRun] = {}
    drawn = False
    try:
        while True:
            while len(active) < plan.jobs and \
                    (run := next_run(plan, state, busy=active)) is not None:
                start_slice(plan, run, state, stopper)
                active[run.key] = run
            if not active:
                return drawn
            key, code = stopper.wait(list(active))
            run = active.pop(key)
            end_slice(plan, run, state, code)
            following = next_run(plan, state, busy=active)
            drawn = following is None or current_step(following) >= current_step(run)
            if drawn:  # every run has had its slice: measure and redraw once a turn
                measure(plan, state, stopper)
            report(plan, state, args, figures=drawn)
            stopper.check()
    except Interrupted:
        stopper.stop_all()
        raise


# -- measurements with ntm evaluate's code, in a child process ---------------------------------
def pending_measurements(plan: Plan, state: dict) -> dict:
    """What the runs' checkpoints offer that the state has not measured yet: N-grams' cost at
    every kept checkpoint, and copy's generalisation at the two runs' latest checkpoints."""
    job: dict = {"ngrams": [], "copy": None, "length": plan.ngrams_length}
    for run in plan.runs:
        if run.task != "ngrams" or not has_checkpoint(run.run_dir):
            continue
        measured = state["ngrams"].get(run.key, {})
        job["ngrams"] += [{"key": run.key, "run_dir": str(run.run_dir), "step": step}
                          for step in kept_steps(run.run_dir) if str(step) not in measured]
    copy_runs = [r for r in plan.runs if r.task == "copy" and has_checkpoint(r.run_dir)]
    if copy_runs:
        steps = {r.model: kept_steps(r.run_dir)[-1] for r in copy_runs}
        if (state.get("copy") or {}).get("steps") != steps:
            job["copy"] = {"steps": steps, "points": list(plan.copy_points),
                           "sequences": COPY_SEQUENCES if not plan.small else 4,
                           "runs": {r.model: str(r.run_dir) for r in copy_runs}}
    return job


def kept_steps(run_dir: Path) -> list[int]:
    """The steps of the checkpoints a run keeps, from its ``checkpoints/checkpoint`` index
    (read as text: no TensorFlow in this process)."""
    index = run_dir / "checkpoints" / "checkpoint"
    steps = set()
    for line in index.read_text().splitlines():
        if line.startswith("all_model_checkpoint_paths:"):
            steps.add(int(line.rsplit("-", 1)[1].strip().strip('"')))
    return sorted(steps)


def measure(plan: Plan, state: dict, stopper: Stopper) -> None:
    """Run the pending measurements in one child process (TensorFlow stays out of this one, so
    it forks its children safely) and keep what it returns in the state."""
    job = pending_measurements(plan, state)
    if not job["ngrams"] and job["copy"] is None:
        return
    with tempfile.TemporaryDirectory(prefix="paper-measure-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job["out"] = str(out_path)
        job_path.write_text(json.dumps(job))
        print(f"measuring: {len(job['ngrams'])} N-grams checkpoint(s)"
              + (", copy generalisation" if job["copy"] else ""), flush=True)
        code = stopper.run("measure", [sys.executable, str(Path(__file__).resolve()),
                                       "--measure", str(job_path)])
        if code != 0:
            print(f"measurement failed (exit code {code}); tried again after the next slice",
                  flush=True)
            return
        done = json.loads(out_path.read_text())
    for point in done["ngrams"]:
        state["ngrams"].setdefault(point.pop("key"), {})[str(point["step"])] = point
    if done["copy"] is not None:
        state["copy"] = done["copy"]
    save_state(plan, state)


def run_measurements(job_path: Path) -> None:
    """The child's side of ``measure``: ``ntm evaluate``'s code on each asked checkpoint."""
    from ntm.cli.common import quiet_tensorflow
    from ntm.cli.evaluate import evaluate_run
    from ntm.contract.errors import NtmError

    quiet_tensorflow(1)
    job = json.loads(job_path.read_text())
    out = {"ngrams": [], "copy": None}
    for item in job["ngrams"]:
        try:
            _, trained, [row] = evaluate_run(Path(item["run_dir"]), str(job["length"]),
                                             NGRAMS_SEQUENCES, seed=EVAL_DATA_SEED,
                                             checkpoint=item["step"])
        except NtmError as err:  # e.g. pruned since it was listed: recorded, never retried
            out["ngrams"].append({"key": item["key"], "step": item["step"], "error": str(err)})
            continue
        out["ngrams"].append({"key": item["key"], "step": item["step"],
                              "sequences": int(trained.sequences.numpy()),
                              "cost_bits": row.measures["cost_bits"],
                              "optimal_bits": row.measures["optimal_bits"],
                              "bits_per_seq": row.mean_bits, "eval_sequences": row.sequences})
    if job["copy"] is not None:
        copy = job["copy"]
        points = ",".join(map(str, copy["points"]))
        tables, outputs = {}, {}
        for model, run_dir in copy["runs"].items():
            _, trained, rows = evaluate_run(Path(run_dir), points, copy["sequences"],
                                            seed=EVAL_DATA_SEED, checkpoint=copy["steps"][model])
            tables[model] = {"step": int(trained.step.numpy()),
                             "sequences_seen": int(trained.sequences.numpy()),
                             "rows": [r.as_dict() for r in rows]}
            outputs[model] = copy_outputs(Path(run_dir), copy["steps"][model], copy["points"])
        out["copy"] = {"steps": copy["steps"], "tables": tables, "outputs": outputs}
    write_json_atomic(Path(job["out"]), out)


def copy_outputs(run_dir: Path, step: int, lengths) -> dict:
    """One copy sequence per length (the same for every run: data seed EVAL_DATA_SEED) and the
    run's outputs on its answer steps: {length: {"targets": [T][8], "outputs": [T][8]}}."""
    import numpy as np

    from ntm.contract.tasks import Difficulty
    from ntm.training.evaluation import rows_for_points
    from ntm.training.runs import Run

    run = Run.load(run_dir, step)
    rows_for = (rows_for_points(run.task, run.model_config.memory_size)
                if run.model_config.has_memory else None)
    out = {}
    for length in lengths:
        point = Difficulty(length)
        batch = run.task.fixed_batch(np.random.default_rng([EVAL_DATA_SEED, length]), 1, point)
        probs = (run.probabilities(batch.inputs, rows_for(point)) if rows_for
                 else run.probabilities(batch.inputs))
        scored = batch.mask[0] > 0
        out[str(length)] = {"targets": batch.targets[0][scored].round(3).tolist(),
                            "outputs": np.asarray(probs)[0][scored].round(3).tolist()}
    return out


# -- the report -------------------------------------------------------------------------------
def measured_points(state: dict, run: PaperRun) -> list[dict]:
    """N-grams' measured checkpoints of ``run``, by step (one that could not be read left out)."""
    points = state["ngrams"].get(run.key, {}).values()
    return sorted((p for p in points if "error" not in p), key=lambda p: p["step"])


def curve(plan: Plan, run: PaperRun, state: dict) -> dict:
    """The run's learning curve: x sequences seen, y the task's cost (held-out bits/seq; for
    N-grams the measured cost in bits) and the training points drawn faint behind."""
    records = read_metrics(run.run_dir)
    train = [r for r in records if "loss" in r and "sequences" in r]
    if run.task == "ngrams":
        points = measured_points(state, run)
        return {"x": [p["sequences"] for p in points], "y": [p["cost_bits"] for p in points],
                "optimal": [p["optimal_bits"] for p in points],
                "train_x": [r["sequences"] for r in train],
                "train_y": [r["loss"] / math.log(2) for r in train]}
    evals = [r for r in records if "eval_bits_per_seq" in r and "sequences" in r]
    result = {"x": [r["sequences"] for r in evals], "y": [r["eval_bits_per_seq"] for r in evals],
              "train_x": [r["sequences"] for r in train],
              "train_y": [r["bits_per_seq"] for r in train]}
    if TASKS[run.task].cross_entropy_figure:
        result["train_cost"] = [r["loss"] / math.log(2) for r in train]
    return result


def run_row(plan: Plan, run: PaperRun, state: dict) -> dict:
    """Everything the table says about one run, from its directory and the state."""
    summary = read_summary(run.run_dir)
    records = read_metrics(run.run_dir)
    step = int(summary.get("step", 0))
    seconds = float(summary.get("elapsed_seconds", 0.0))
    failure = state["runs"].get(run.key, {}).get("failure")
    evals = [r for r in records if "eval_bits_per_seq" in r]
    losses = [r for r in records if "loss" in r]
    first = next((r for r in evals if r["eval_bits_per_seq"] < THRESHOLD and "sequences" in r),
                 None)
    if failure:
        status = "failed: " + failure
    elif summary.get("stopped") == "target":
        status = f"done: target at step {step}"
    elif step >= run.budget_steps:
        status = "done: budget"
    elif step == 0:
        status = "not started"
    else:
        status = f"{100 * step / run.budget_steps:.1f}% of budget"
    if failure or summary.get("stopped") == "target" or step >= run.budget_steps:
        left = 0.0
    else:  # at the run's own pace so far; unknown before its first slice
        left = seconds / step * (run.budget_steps - step) if step else None
    row = {"key": run.key, "task": run.task, "model": run.model, "command": run.command(),
           "run_dir": str(display(run.run_dir)), "budget_sequences": run.budget_sequences,
           "budget_steps": run.budget_steps, "step": step,
           "sequences": int(summary.get("sequences", 0)), "train_seconds": round(seconds, 1),
           "seconds_per_step": round(seconds / step, 4) if step else None,
           "seconds_to_budget": None if left is None else round(left),
           "heldout_bits_per_seq": evals[-1]["eval_bits_per_seq"] if evals else None,
           "training_cost_bits": training_cost_bits(losses),
           "first_below_threshold": ({"sequences": first["sequences"],
                                      "train_seconds": first["elapsed"]} if first else None),
           "status": status, "failure": failure}
    if run.task == "ngrams":
        points = measured_points(state, run)
        row["cost_bits"] = points[-1] if points else None
    return row


def training_cost_bits(losses: list[dict], logs: int = COST_LOGS) -> float | None:
    """The training cross-entropy in bits per sequence: the median of the last ``logs`` logged
    training losses (nats, one batch each) over ln 2; None before the first."""
    if not losses:
        return None
    return statistics.median(r["loss"] for r in losses[-logs:]) / math.log(2)


def _cell(value, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _latest(row: dict) -> str:
    if row["task"] == "ngrams":
        point = row.get("cost_bits")
        if point is None:
            return "-"
        return (f"{point['cost_bits']:.1f} bits cost (optimal {point['optimal_bits']:.1f}) at "
                f"{point['sequences']:,}")
    return _cell(row["heldout_bits_per_seq"], "{:.3f} bits/seq")


def _hours(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def status_table(result: dict) -> list[str]:
    lines = ["| task | network | sequences seen | budget | where | training time | s/step "
             "| latest held-out cost | first < 0.1 bits/seq | time left (est.) |",
             "|" + " --- |" * 10]
    for row in result["runs"]:
        first = row["first_below_threshold"]
        lines.append(
            f"| {row['task']} | {MODEL_NAMES[row['model']]} | {row['sequences']:,} | "
            f"{row['budget_sequences']:,} | {row['status']} | {_hours(row['train_seconds'])} | "
            f"{_cell(row['seconds_per_step'], '{:.3f}')} | {_latest(row)} | "
            + ("-" if row["task"] == "ngrams" else
               f"{first['sequences']:,} sequences" if first else "not yet")
            + f" | {_hours(row['seconds_to_budget'])} |")
    left = [r["seconds_to_budget"] for r in result["runs"]]
    known = [s for s in left if s is not None]
    jobs = max(1, result.get("cpu_count") or 1)
    lines += ["", f"Time left to every budget at each run's s/step so far: {_hours(sum(known))} "
                  f"one run after another; {_hours(time_with_jobs(known, jobs))} with "
                  f"`--jobs {jobs}` (this machine's cores)"
              + ("" if len(known) == len(left) else " (runs not yet started not counted)")
              + "; a run that stops at its target takes less."]
    return lines


def time_with_jobs(seconds_left: list[float], jobs: int) -> float:
    """How long runs that need ``seconds_left`` each take with ``jobs`` of them at once: the
    machine's share, sum / jobs, unless one run alone takes longer (it cannot be split).
    A lower bound, reached as the benchmark fills every slot while runs are left."""
    if not seconds_left:
        return 0.0
    return max(max(seconds_left), sum(seconds_left) / jobs)


def markdown(result: dict) -> str:
    lines = [f"# The paper's comparison: NTM against the LSTM baseline ({result['mode']})", "",
             f"`python benchmarks/paper.py{' --small' if result['mode'] == 'small' else ''}`: "
             f"seed {SEED}, batch {BATCH_SIZE}, slices of {result['slice_steps']} steps, "
             f"round-robin; figures and discussion in docs/paper.md. Held-out cost: bits/seq "
             f"wrong (the trainer's held-out set); N-grams: bits of cross-entropy per "
             f"{result['ngrams_length']}-bit sequence ({NGRAMS_SEQUENCES} fixed sequences), "
             f"beside the optimal Bayesian estimator's.", ""]
    lines += status_table(result)
    copy = result.get("copy")
    if copy:
        lines += ["", "Copy generalisation (bits/seq, perfect sequences; "
                      f"{copy['tables'][next(iter(copy['tables']))]['rows'][0]['sequences']} "
                      f"sequences per length, `ntm evaluate`'s code):", ""]
        lines += copy_table(copy)
    lines += ["", "Commands:", ""] + [f"- `{row['command']}`" for row in result["runs"]]
    return "\n".join(lines) + "\n"


def copy_table(copy: dict) -> list[str]:
    models = list(copy["tables"])
    lengths = [r["length"] for r in copy["tables"][models[0]]["rows"]]
    lines = ["| network (step, sequences seen) | " + " | ".join(f"length {n}" for n in lengths)
             + " |", "|" + " --- |" * (len(lengths) + 1)]
    for model in models:
        table = copy["tables"][model]
        cells = [f"{r['mean_bits']:.2f} ({100 * r['perfect_fraction']:.0f}%)"
                 for r in table["rows"]]
        lines.append(f"| {MODEL_NAMES[model]} ({table['step']}, {table['sequences_seen']:,}) | "
                     + " | ".join(cells) + " |")
    return lines


def build_result(plan: Plan, state: dict) -> dict:
    return {"benchmark": "paper", "mode": "small" if plan.small else "full", "seed": SEED,
            "batch_size": BATCH_SIZE, "slice_steps": plan.slice_steps,
            "ngrams_length": plan.ngrams_length, "cpu_count": os.cpu_count(),
            "code": code_version(),
            "runs": [run_row(plan, run, state) for run in plan.runs],
            "curves": {run.key: curve(plan, run, state) for run in plan.runs},
            "copy": state.get("copy")}


# -- figures ----------------------------------------------------------------------------------
def draw_figures(plan: Plan, result: dict, images: Path) -> list[Path]:
    """The learning curves per task and copy's generalisation pictures; the paths written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("no matplotlib: figures not drawn (pip install -e '.[plot]')", flush=True)
        return []
    import numpy as np

    from ntm.cli.figures import Curve, overlay_figure, running_median, save_png

    written = []
    for name in dict.fromkeys(run.task for run in plan.runs):
        task = TASKS[name]
        lines, optimal = [], []
        for model in MODELS:
            c = result["curves"][f"{name}-{model}"]
            if not c["x"] and not c["train_x"]:
                continue
            background = (np.asarray(c["train_x"]), running_median(c["train_y"], 20))
            measured = (f", checkpoints ({NGRAMS_SEQUENCES} fixed sequences)" if name == "ngrams"
                        else ", held-out")
            lines.append(Curve(f"{MODEL_NAMES[model]}" + (measured if c["x"] else ""),
                               np.asarray(c["x"]), np.asarray(c["y"]), background, ".-"))
            optimal += c.get("optimal", [])
        if not lines:
            continue
        is_ngrams = name == "ngrams"
        references = [("optimal Bayesian estimator", float(np.mean(optimal)))] if optimal else []
        ylabel = ("cost per sequence (bits of cross-entropy)" if is_ngrams
                  else "cost per sequence (bits wrong)")
        figure = overlay_figure(
            lines, ylabel=ylabel, log_y=False, references=references,
            ylim=None if plan.small else y_range(task, lines, references),
            title=f"{name}: NTM against LSTM (paper Figure {task.figure}; training faint)",
            width=8.0, height=4.5, dpi=100)
        path = images / f"paper-{name}.png"
        save_png(figure, path, 100)
        written.append(path)
        if task.cross_entropy_figure:
            written += draw_cross_entropy(plan, result, task, images)
    copy = result.get("copy")
    if copy:
        written += draw_copy_generalisation(plan, copy, images)
    return written


def draw_cross_entropy(plan: Plan, result: dict, task: PaperTask, images: Path) -> list[Path]:
    """The training cross-entropy in bits per sequence (running median of COST_LOGS logged
    batches), NTM against LSTM, on the paper's y range: ``paper-TASK-cross-entropy.png``."""
    import numpy as np

    from ntm.cli.figures import Curve, overlay_figure, running_median, save_png

    lines = []
    for model in MODELS:
        c = result["curves"][f"{task.name}-{model}"]
        if c.get("train_cost"):
            lines.append(Curve(f"{MODEL_NAMES[model]}, training batches (running median of "
                               f"{COST_LOGS})", np.asarray(c["train_x"]),
                               running_median(c["train_cost"], COST_LOGS), None, "-"))
    if not lines:
        return []
    figure = overlay_figure(
        lines, ylabel="cost per sequence (bits of cross-entropy)", log_y=False,
        ylim=None if plan.small else y_range(task, lines, []),
        title=f"{task.name}: training cross-entropy, NTM against LSTM (paper Figure "
              f"{task.figure})", width=8.0, height=4.5, dpi=100)
    path = images / f"paper-{task.name}-cross-entropy.png"
    save_png(figure, path, 100)
    return [path]


def y_range(task: PaperTask, lines: list, references: list) -> tuple[float, float]:
    """The paper's y range, widened to show where every curve is now (its last point) and the
    reference lines: early points above it are cut off, as in the paper, but a short curve
    still above the paper's range is not lost off the top."""
    low, high = task.y_range
    latest = [float(line.y[-1]) for line in lines if len(line.y)]
    high = max([high, *[1.05 * y for y in latest]])
    low = min([low, *[value - 0.02 * (high - low) for _, value in references]])
    return low, high


def draw_copy_generalisation(plan: Plan, copy: dict, images: Path) -> list[Path]:
    import numpy as np

    from ntm.cli.figures import Curve, outputs_figure, overlay_figure, save_png

    copy_task = [r for r in plan.runs if r.task == "copy"]
    trained = (1, 3) if plan.small else (1, 20)
    lines = []
    for model, table in copy["tables"].items():
        rows = table["rows"]
        lines.append(Curve(f"{MODEL_NAMES[model]} (step {table['step']})",
                           np.array([r["length"] for r in rows]),
                           np.array([r["mean_bits"] for r in rows]), None, "o-"))
    figure = overlay_figure(lines, xlabel="sequence length", ylabel="bits / sequence (mean)",
                            log_y=True, shade=(*trained, f"trained lengths {trained[0]}-"
                                                         f"{trained[1]}"),
                            title="copy: generalisation past the training lengths",
                            width=7.0, height=4.5, dpi=100)
    path = images / "paper-copy-generalisation.png"
    save_png(figure, path, 100)
    written = [path]
    outputs = copy["outputs"]
    models = [r.model for r in copy_task if r.model in outputs]
    columns = []
    for length in plan.copy_points:
        first = outputs[models[0]][str(length)]
        panels = [("targets", np.asarray(first["targets"]))]
        panels += [(f"{MODEL_NAMES[m]} outputs", np.asarray(outputs[m][str(length)]["outputs"]))
                   for m in models]
        columns.append((f"length {length}", panels))
    figure = outputs_figure(columns, title="copy: targets and outputs (paper Figures 4 and 5)",
                            width=14.0, height=1.6 + 1.4 * (len(models) + 1), dpi=100)
    path = images / "paper-copy-outputs.png"
    save_png(figure, path, 100)
    return written + [path]


def update_doc(doc: Path, result: dict) -> None:
    """Replace the status section of ``doc`` (between the markers) with the current table."""
    if not doc.is_file():
        return
    text = doc.read_text()
    if STATUS_BEGINS not in text or STATUS_ENDS not in text:
        print(f"{doc}: no status markers, not updated", flush=True)
        return
    head, rest = text.split(STATUS_BEGINS, 1)
    _, tail = rest.split(STATUS_ENDS, 1)
    body = status_table(result)
    copy = result.get("copy")
    if copy:
        body += ["", "Copy at lengths past 20 (bits/seq, perfect sequences):", ""] + \
            copy_table(copy)
    with atomic_file(doc, "w") as f:
        f.write(head + STATUS_BEGINS + "\n" + "\n".join(body) + "\n" + STATUS_ENDS + tail)


def _protocol(command: str) -> str:
    """A run's command without its ``--out``: where a run lives does not make it another run."""
    return re.sub(r" --out \S+", "", command)


def runs_behind_record(record: dict | None, result: dict) -> list[str]:
    """The runs that the report on record got further with than the runs here, as
    "KEY (N sequences on record, M here)": the same run (its command but for --out), more
    sequences seen there, and not finished here (a run done at its target may stop sooner).
    They are there when run folders were lost or moved: the record is the better measurement."""
    if not record:
        return []
    recorded = {row["key"]: row for row in record.get("runs", [])}
    behind = []
    for row in result["runs"]:
        old = recorded.get(row["key"])
        if old is None or _protocol(old["command"]) != _protocol(row["command"]):
            continue
        if old["sequences"] > row["sequences"] and not row["status"].startswith("done"):
            behind.append(f"{row['key']} ({old['sequences']:,} sequences on record, "
                          f"{row['sequences']:,} here)")
    return behind


def report(plan: Plan, state: dict, args: argparse.Namespace, figures: bool = True) -> None:
    """results/paper.{json,md} and the status section of the page; the figures too when
    ``figures`` (once a turn: drawing them all takes seconds).

    A report never writes over one on record that got further with the same runs (their
    folders lost: ``runs_behind_record``) unless ``--replace-record``: it goes, figures and all,
    to RUNS_ROOT/report instead, and the page is left as it is, until the runs pass it."""
    result = build_result(plan, state)
    out = args.out
    images = Path(args.images or (args.out / "paper-small-images" if plan.small
                                  else REPO / "docs" / "images"))
    doc = args.doc or (None if plan.small else REPO / "docs" / "paper.md")
    behind = [] if args.replace_record else \
        runs_behind_record(read_results(args.out, "paper", plan.small), result)
    if behind:
        out = images = plan.runs_root / "report"
        doc = None
        print(f"the report in {display(args.out)} is further along than these runs "
              f"({'; '.join(behind)}): it is kept, and this one goes to {display(out)} until "
              f"they pass it (--replace-record writes over it)", flush=True)
    drawn = draw_figures(plan, result, images) if figures else []
    result["figures"] = sorted(str(display(p)) for p in images.glob("paper-*.png")) \
        if images.is_dir() else [str(display(p)) for p in drawn]
    if doc is not None:
        update_doc(Path(doc), result)
    # The curves' training points stay in the run directories: every 50 steps of ten runs would
    # make the results file megabytes long.
    result["curves"] = {key: {name: [round(v, 3) for v in values] for name, values in c.items()
                              if not name.startswith("train_")}
                        for key, c in result["curves"].items()}
    if result["copy"]:  # the outputs are the picture's; the tables are the numbers
        result["copy"] = {k: v for k, v in result["copy"].items() if k != "outputs"}
    write_results(out, "paper", plan.small, result, markdown(result))


# -- the command ------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=None,
                        help=f"comma-separated tasks to train; the report covers every run "
                             f"[default: all: {','.join(TASKS)}; small: {','.join(SMALL_TASKS)}]")
    parser.add_argument("--slice", type=int, default=4000,
                        help="sequences a run trains per turn [default: 4000]")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs that train at once, each on one thread: as many as the "
                             "cores the benchmark may take [default: 1]")
    parser.add_argument("--budget", type=int, default=None,
                        help="sequences per run [default: the paper's x axis per task: "
                             "1,000,000; repeat-copy 500,000]")
    parser.add_argument("--runs-root", type=Path, default=None,
                        help="where the runs and the state go [default: runs/paper]")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--images", type=Path, default=None,
                        help="where the figures go [default: docs/images; small: OUT]")
    parser.add_argument("--doc", type=Path, default=None,
                        help="the page whose status section is rewritten [default: "
                             "docs/paper.md; small: none]")
    parser.add_argument("--restart", default=None, metavar="RUNS",
                        help="comma-separated runs (e.g. priority-sort-ntm) that start again "
                             "from step 0 if their options changed since they started (the "
                             "old directory is moved to RUNS_ROOT/set-aside); unchanged, "
                             "they go on")
    parser.add_argument("--replace-record", action="store_true",
                        help="write the report even over one on record that got further with "
                             "the same runs (their folders lost) [default: keep that one and "
                             "write to RUNS_ROOT/report]")
    parser.add_argument("--report-only", action="store_true",
                        help="measure what the runs offer and redraw; no training")
    parser.add_argument("--small", action="store_true", help="tiny runs, in seconds (tests)")
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:  # the measuring child (measure())
        run_measurements(args.measure)
        return
    if args.restart and args.report_only:
        parser.error("--restart starts runs again: it trains, and --report-only does not")
    plan = make_plan(args)
    stopper = Stopper()
    try:
        with only_one(plan):
            state = load_state(plan, args.restart.split(",") if args.restart else ())
            drawn = False if args.report_only else train(plan, state, stopper, args)
            if not drawn:  # --report-only, or nothing was left to train
                measure(plan, state, stopper)
                report(plan, state, args)
    except Interrupted as err:
        print(f"{err}; run the same command again to resume", flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
