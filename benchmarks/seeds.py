"""Benchmark: how much the seed matters. ``ntm train`` with its defaults on K seeds, one by one.

For every seed it records the sequences and training seconds to the first held-out evaluation
below 0.1 bits/seq (or "not within budget"), where training stopped, and generalisation measured
with ``ntm evaluate``'s own code (copy: lengths 50 and 120; recall: 12 and 16 items). It writes
``results/seeds.json`` and ``results/seeds.md`` with one section per task (a section of the other
task already there is kept): a row per seed, then the median and the worst over the seeds. A seed
that never reaches the threshold, or whose training fails, is a row of the table, not an error.

Resumable: seed N trains in RUNS_ROOT/TASK-seedN, and the rows of finished seeds are kept in
RUNS_ROOT/TASK-sweep.json. Stop the sweep (Ctrl-C or SIGTERM: the trainer checkpoints first; even
SIGKILL: the trainer then gets SIGTERM) and run the same command again: finished seeds are not
retrained, and an interrupted seed continues from its last checkpoint (its training seconds
then include the few seconds the trainer spends tracing its step again after the restart).
Two processes may sweep other seeds of one section side by side (``--seeds 1,2`` and
``--seeds 3,4,5``, e.g. with ``--threads 1`` in a variant's options): the state and the results
are locked while either writes, and each writes every finished seed of the section.

    python benchmarks/seeds.py --task copy                   # seeds 1-5, minutes each
    python benchmarks/seeds.py --task recall --seeds 3,7     # chosen seeds
    python benchmarks/seeds.py --task copy --small           # seconds; used by the test suite
    python benchmarks/seeds.py --task recall --variant lr1e-4 --train-args "--lr 1e-4"
                                                   # a lever: its own runs and its own section
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.results_io import read_results, write_results  # noqa: E402
from ntm.training.config import TrainConfig
from ntm.files import write_json_atomic  # noqa: E402
from ntm.training.runs import has_checkpoint, read_summary
from ntm.training.layout import METRICS_FILE

THRESHOLD = 0.1  # bits/seq: "converged", as Collier & Beel declare it
EVAL_DATA_SEED = 1234  # ntm evaluate's default: every seed's model sees the same sequences
NOT_REACHED = "not within budget"


@dataclass(frozen=True)
class EvalPoint:
    """A generalisation point: sequence length (recall: item count), measured with
    ``memory_size`` memory rows; None gives it the rows ``ntm evaluate`` (and ``ntm serve``)
    would: the smallest of the trained rows x 1, 2, 4, ... that holds it."""

    length: int
    memory_size: int | None = None

    def label(self, length_name: str) -> str:
        memory = f", N={self.memory_size}" if self.memory_size is not None else ""
        return f"{length_name} {self.length}{memory}"


# The generalisation points per task (copy 1000 runs with 1024 rows, as ntm serve gives it).
EVAL_POINTS = {
    "copy": (EvalPoint(50), EvalPoint(120), EvalPoint(1000)),
    "recall": (EvalPoint(12), EvalPoint(16)),
}
SMALL_EVAL_POINTS = {
    "copy": (EvalPoint(3), EvalPoint(4), EvalPoint(8)),  # 8 needs 10 rows: grown to 16
    "recall": (EvalPoint(3), EvalPoint(4)),
}
# --small: a tiny model on lengths (items) up to 2 that reaches the threshold within seconds on
# some seeds, so both kinds of row appear. The full sweep passes no option: the defaults.
SMALL_TRAIN_ARGS = ("--steps", "300", "--eval-every", "25", "--checkpoint-every", "50",
                    "--memory-size", "8", "--controller-size", "16", "--max-length", "2",
                    "--eval-size", "16", "--batch-size", "16", "--lr", "3e-3")


class Interrupted(Exception):
    """The sweep was asked to stop; the seed in training has checkpointed and can resume."""


@dataclass(frozen=True)
class Sweep:
    """What one invocation sweeps; every decision below reads it, nothing else."""

    task: str
    seeds: tuple[int, ...]
    runs_root: Path
    train_args: tuple[str, ...]  # options beyond --task/--seed/--out; empty = the defaults
    budget_steps: int  # a run that stopped at this step (or at the target) is finished
    points: tuple[EvalPoint, ...]
    eval_sequences: int
    variant: str | None = None  # a named change of the defaults (train_args), reported apart

    @property
    def key(self) -> str:
        """The section of results/seeds.{json,md} this sweep writes."""
        return self.task if self.variant is None else f"{self.task} ({self.variant})"

    def run_dir(self, seed: int) -> Path:
        return self.runs_root / f"{self.task}-seed{seed}"

    @property
    def state_path(self) -> Path:
        return self.runs_root / f"{self.task}-sweep.json"

    def evaluation(self) -> dict:
        """The evaluation settings a kept row must have been measured with."""
        return {"points": [asdict(p) for p in self.points], "sequences": self.eval_sequences,
                "data_seed": EVAL_DATA_SEED}

    def command(self) -> str:
        return " ".join(["ntm train --task", self.task, *self.train_args, "--seed N"])

    def task_defaults(self) -> dict:
        """What "the defaults" meant for this task when the sweep ran (Task.train_defaults):
        they change when a sweep says so, and a row trained under the old ones is not a row
        of the new."""
        from ntm.contract.tasks import get_task

        return dict(get_task(self.task).train_defaults)


# -- state: rows of finished seeds -----------------------------------------------------------
def load_state(sweep: Sweep) -> dict[str, dict]:
    """Rows kept by earlier invocations, by seed (as a string, JSON's keys); exits when they
    were trained with other options, which the run directories cannot mix."""
    if not sweep.state_path.is_file():
        return {}
    state = json.loads(sweep.state_path.read_text())
    if state["train_args"] != list(sweep.train_args):
        raise SystemExit(f"{sweep.state_path} holds seeds trained with options "
                         f"{state['train_args']}, not {list(sweep.train_args)}: choose another "
                         f"--runs-root")
    if state.get("task_defaults") != sweep.task_defaults():
        raise SystemExit(f"{sweep.state_path} holds seeds trained when {sweep.task}'s defaults "
                         f"were {state.get('task_defaults', 'not recorded')}, not "
                         f"{sweep.task_defaults()}: choose another --runs-root")
    return state["seeds"]


def save_state(sweep: Sweep, rows: dict[str, dict]) -> None:
    sweep.runs_root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(sweep.state_path, {"task": sweep.task, "train_args": list(sweep.train_args),
                                         "task_defaults": sweep.task_defaults(), "seeds": rows})


@contextlib.contextmanager
def state_lock(sweep: Sweep):
    """The sweep's state and its section of the results, held by one process at a time: two
    processes may sweep other seeds of one section side by side (a CPU core each), and neither
    loses the other's rows."""
    sweep.runs_root.mkdir(parents=True, exist_ok=True)
    with open(sweep.runs_root / f"{sweep.task}-sweep.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_row(sweep: Sweep, row: dict) -> dict[str, dict]:
    """Seed's row added to the state as it is on disk now (another process may have added its
    own since this one read it); call under ``state_lock``. Returns every kept row."""
    rows = load_state(sweep)
    rows[str(row["seed"])] = row
    save_state(sweep, rows)
    return rows


def section_seeds(sweep: Sweep, kept: dict[str, dict]) -> list[int]:
    """The seeds of this sweep's section: its own, then those other processes finished in the
    same state with the same evaluation (ascending)."""
    others = sorted(int(seed) for seed, row in kept.items()
                    if int(seed) not in sweep.seeds and row.get("evaluation") == sweep.evaluation())
    return [*sweep.seeds, *others]


# -- training ---------------------------------------------------------------------------------
def is_finished(run_dir: Path, budget_steps: int) -> bool:
    """True when the run's last session reached the target or the step budget."""
    summary = read_summary(run_dir)
    return summary.get("stopped") == "target" or (
        summary.get("stopped") == "steps" and summary.get("step", 0) >= budget_steps)


def _stop_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the sweep dies, even by SIGKILL, so the
    trainer checkpoints and stops instead of training on unwatched."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_env() -> dict:
    """This environment without NTM_* variables: the CLI reads options from them, and the
    sweep measures the defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTM_")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3"}


def train(sweep: Sweep, seed: int) -> str | None:
    """Train (or resume) seed's run with ``ntm train``, its output going to ours.

    -> None when it ended normally, or the failure to record (a non-finite loss the trainer
    gave up on). SIGINT/SIGTERM to the sweep is passed on as one SIGTERM (the trainer saves a
    checkpoint and stops) and raises Interrupted, as does a trainer stopped from outside.
    """
    run_dir = sweep.run_dir(seed)
    resume = has_checkpoint(run_dir)
    cmd = [sys.executable, "-m", "ntm.cli.main", "train", "--task", sweep.task, "--seed", str(seed),
           "--out", str(run_dir), *sweep.train_args, *(["--resume"] if resume else [])]
    print(f"seed {seed}: {'resuming' if resume else 'training'} in {run_dir}", flush=True)
    # Its own session: a Ctrl-C reaches the sweep alone, which forwards it exactly once.
    child = subprocess.Popen(cmd, cwd=REPO, env=_child_env(), start_new_session=True,
                             preexec_fn=_stop_with_parent)
    asked_to_stop = []

    def forward(signum, frame):
        asked_to_stop.append(signum)
        child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if asked_to_stop or code == 130 or code < 0:  # 130: ntm train was interrupted
        raise Interrupted(f"seed {seed} stopped (exit code {code}) at its last checkpoint")
    if code != 0:
        return f"ntm train exited with code {code} (its message is in the sweep's log)"
    return None


# -- one seed's row ---------------------------------------------------------------------------
def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def first_below(records: list[dict], threshold: float = THRESHOLD) -> dict | None:
    """The first held-out evaluation below ``threshold``: step, sequences, training seconds."""
    for r in records:
        if "eval_bits_per_seq" in r and r["eval_bits_per_seq"] < threshold:
            return {"step": r["step"], "sequences": r["sequences"], "train_seconds": r["elapsed"]}
    return None


def stopped(run_dir: Path) -> dict | None:
    """How the run's last session ended (none when it failed before writing its summary)."""
    s = read_summary(run_dir)
    if not s:
        return None
    return {"reason": s["stopped"], "step": s["step"], "sequences": s["sequences"],
            "train_seconds": s["elapsed_seconds"], "heldout_bits_per_seq": s["heldout_bits_per_seq"]}


def evaluate_seed(run_dir: Path, points: tuple[EvalPoint, ...], sequences: int) -> list[dict]:
    """Bits/seq of the run's latest checkpoint at ``points``, through ``ntm evaluate``'s code
    (one evaluation per distinct memory_size); each row records the rows it ran with."""
    from ntm.cli.common import quiet_tensorflow
    from ntm.cli.evaluate import evaluate_run

    quiet_tensorflow(1)
    out: dict[EvalPoint, dict] = {}
    for size in dict.fromkeys(p.memory_size for p in points):
        group = [p for p in points if p.memory_size == size]
        text = ",".join(str(p.length) for p in group)
        _, _, rows = evaluate_run(run_dir, text, sequences, seed=EVAL_DATA_SEED,
                                  memory_size=size)
        out.update({p: row.as_dict() for p, row in zip(group, rows)})
    return [out[p] for p in points]


def seed_row(sweep: Sweep, seed: int, failure: str | None) -> dict:
    """Everything the table says about one trained seed, read from its run directory."""
    import click

    from ntm.contract.errors import NtmError

    run_dir = sweep.run_dir(seed)
    generalisation, eval_error = None, None
    if has_checkpoint(run_dir):
        try:
            generalisation = evaluate_seed(run_dir, sweep.points, sweep.eval_sequences)
        except (click.ClickException, NtmError) as err:  # a corrupt run: a result like any other
            eval_error = err.message if isinstance(err, click.ClickException) else str(err)
    return {"seed": seed, "run_dir": str(run_dir), "failure": failure,
            "first_below_threshold": first_below(read_metrics(run_dir)),
            "stopped": stopped(run_dir), "generalisation": generalisation,
            "evaluation_error": eval_error, "evaluation": sweep.evaluation(),
            "code": code_version()}


def code_version() -> str | None:
    """The git commit the row was measured at, "+dirty" when ntm/ or cli/ had uncommitted
    changes then (others may be editing the tree during a long sweep)."""
    def git(*args):
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if commit is None:
        return None
    return commit + ("+dirty" if git("status", "--porcelain", "ntm", "cli") else "")


def sweep_seed(sweep: Sweep, seed: int, kept: dict | None) -> dict:
    """Seed's row: the kept one when measured as this sweep measures; otherwise train what is
    missing (nothing for a finished or failed run) and measure it."""
    if kept is not None and kept["evaluation"] == sweep.evaluation():
        print(f"seed {seed}: done earlier, row kept from {sweep.state_path}", flush=True)
        return kept
    failure = kept["failure"] if kept is not None else None
    if failure is None and not is_finished(sweep.run_dir(seed), sweep.budget_steps):
        failure = train(sweep, seed)
    print(f"seed {seed}: evaluating at {[p.length for p in sweep.points]}", flush=True)
    return seed_row(sweep, seed, failure)


# -- median and worst -------------------------------------------------------------------------
def _to_threshold(row: dict, key: str) -> float:
    first = row["first_below_threshold"]
    return math.inf if first is None else first[key]


def _reported(value: float):
    return None if math.isinf(value) else value


def summarise(rows: list[dict], points: tuple[EvalPoint, ...]) -> dict:
    """Median and worst over the seeds. A seed not within budget counts as infinitely slow
    (so the median is "not within budget" when half the seeds or more are); generalisation
    is over the seeds that have an evaluation, the worst taken per column."""
    summary = {}
    for name, pick in (("median", statistics.median), ("worst", max)):
        summary[name] = {key: _reported(pick([_to_threshold(r, key) for r in rows]))
                         for key in ("sequences", "train_seconds")}
    measured = [r["generalisation"] for r in rows if r["generalisation"]]
    for i, point in enumerate(points):
        bits = [g[i]["mean_bits"] for g in measured]
        perfect = [g[i]["perfect_fraction"] for g in measured]
        for name, bits_of, perfect_of in (("median", statistics.median, statistics.median),
                                          ("worst", max, min)):
            summary[name].setdefault("generalisation", []).append(
                {**asdict(point), "mean_bits": bits_of(bits) if bits else None,
                 "perfect_fraction": perfect_of(perfect) if perfect else None})
    return summary


# -- the report -------------------------------------------------------------------------------
def task_section(sweep: Sweep, kept: dict[str, dict]) -> dict:
    """The section of this sweep's seeds (``section_seeds``) from the kept rows, in that order."""
    planned = section_seeds(sweep, kept)
    rows = [kept[str(seed)] for seed in planned if str(seed) in kept]
    within = sum(r["first_below_threshold"] is not None for r in rows)
    return {"task": sweep.task, "variant": sweep.variant,
            "command": sweep.command(), "defaults": not sweep.train_args,
            "task_defaults": sweep.task_defaults(),
            "seeds_planned": planned,
            "seeds_done": len(rows), "complete": len(rows) == len(planned),
            "within_budget": within, "budget_steps": sweep.budget_steps,
            "points": [asdict(p) for p in sweep.points], "eval_sequences": sweep.eval_sequences,
            "seeds": rows, **summarise(rows, sweep.points)}


def _cell_threshold(value: float | None) -> str:
    return NOT_REACHED if value is None else f"{value:.0f}"


def _cell_generalisation(g: dict | None) -> str:
    if g is None or g["mean_bits"] is None:
        return "-"
    return f"{g['mean_bits']:.2f} ({100 * g['perfect_fraction']:.0f}%)"


def _cell_stopped(row: dict) -> str:
    s = row["stopped"]
    if row["failure"]:
        return "failed: " + row["failure"]
    if s is None:
        return "-"
    return f"{s['reason']} at step {s['step']} ({s['heldout_bits_per_seq']:.3f} bits/seq)"


def _defaults_note(section: dict) -> str:
    """' (the defaults: ...)' for a sweep of the defaults, naming the task's own settings; for
    a variant, what the task's own defaults were when it ran (the command alone does not say
    what it meant then: a later default applies to it now unless it sets that option)."""
    own = section.get("task_defaults") or {}
    named = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in own.items())
    if section["defaults"]:
        return f" (the defaults{': ' + named if named else ''})"
    return f" (run when the task's own defaults were {named or 'none'})"


def markdown_section(key: str, section: dict) -> list[str]:
    from ntm.contract.tasks import get_task

    length_name = get_task(section.get("task", key)).length_name
    points = [EvalPoint(**p) for p in section["points"]]
    lines = [f"## {key}", "",
             f"`{section['command']}`{_defaults_note(section)}, seeds {', '.join(map(str, section['seeds_planned']))} "
             f"({section['seeds_done']} done{'' if section['complete'] else ' so far'}); "
             f"{section['within_budget']} of {section['seeds_done']} below {THRESHOLD} "
             f"bits/seq within {section['budget_steps']} steps. Generalisation: bits/seq "
             f"(perfect sequences) on {section['eval_sequences']} fresh sequences per point, "
             f"`ntm evaluate` at the run's last checkpoint.", ""]
    head = (["seed", f"sequences to < {THRESHOLD}", "training seconds to it", "stopped"]
            + [p.label(length_name) for p in points])
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in section["seeds"]:
        gen = row["generalisation"] or [None] * len(points)
        first = row["first_below_threshold"] or {}
        cells = [str(row["seed"]), _cell_threshold(first.get("sequences")),
                 _cell_threshold(first.get("train_seconds")), _cell_stopped(row)]
        lines.append("| " + " | ".join(cells + [_cell_generalisation(g) for g in gen]) + " |")
    for name in ("median", "worst"):
        s = section[name]
        cells = [f"**{name}**", _cell_threshold(s["sequences"]),
                 _cell_threshold(s["train_seconds"]), ""]
        lines.append("| " + " | ".join(cells + [_cell_generalisation(g)
                                               for g in s["generalisation"]]) + " |")
    return lines + [""]


def markdown(result: dict) -> str:
    lines = [f"# Seed sweep: `ntm train`, one seed after another ({result['mode']})", "",
             "Median and worst over the seeds, each column on its own (the worst of two columns "
             "can be two seeds); a seed not within budget is the slowest.", ""]
    for task in sorted(result["tasks"]):
        lines += markdown_section(task, result["tasks"][task])
    return "\n".join(lines)


def write_report(sweep: Sweep, kept: dict[str, dict], out: Path, small: bool) -> None:
    """Replace this sweep's section of results/seeds.{json,md}, keeping the others; call under
    ``state_lock``."""
    result = read_results(out, "seeds", small) or {}
    tasks = result.get("tasks", {})
    tasks[sweep.key] = task_section(sweep, kept)
    result = {"benchmark": "seeds", "mode": "small" if small else "full",
              "threshold_bits_per_seq": THRESHOLD, "cpu_count": os.cpu_count(), "tasks": tasks}
    write_results(out, "seeds", small, result, markdown(result))


# -- the command ------------------------------------------------------------------------------
def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return seeds


def make_sweep(args: argparse.Namespace) -> Sweep:
    small = args.small
    k = args.k if args.k is not None else (2 if small else 5)
    if (args.variant is None) != (args.train_args is None):
        raise SystemExit("--variant NAME and --train-args \"...\" go together")
    train_args = (*(SMALL_TRAIN_ARGS if small else ()), *shlex.split(args.train_args or ""))
    steps = [int(train_args[i + 1]) for i, a in enumerate(train_args) if a == "--steps"]
    budget = steps[-1] if steps else TrainConfig().steps
    folder = "seeds-small" if small else "seeds"
    runs_root = args.runs_root or REPO / "runs" / (folder if args.variant is None
                                                   else f"{folder}-{args.variant}")
    return Sweep(task=args.task, seeds=args.seeds or tuple(range(1, k + 1)),
                 runs_root=Path(runs_root).resolve(), train_args=train_args, budget_steps=budget,
                 points=(SMALL_EVAL_POINTS if small else EVAL_POINTS)[args.task],
                 eval_sequences=args.eval_sequences or (16 if small else 50),
                 variant=args.variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(EVAL_POINTS), default="copy")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=parse_seeds, default=None, help="e.g. 1,2,3,4,5")
    which.add_argument("-k", type=int, default=None, help="seeds 1..K [default: 5; small: 2]")
    parser.add_argument("--runs-root", type=Path, default=None,
                        help="where the runs and the sweep state go [default: runs/seeds]")
    parser.add_argument("--eval-sequences", type=int, default=None,
                        help="fresh sequences per generalisation point [default: 50; small: 16]")
    parser.add_argument("--small", action="store_true", help="tiny runs, in seconds (tests)")
    parser.add_argument("--variant", default=None,
                        help="name of a change of the defaults (its own runs and section)")
    parser.add_argument("--train-args", default=None,
                        help="the ntm train options of --variant, e.g. \"--lr 1e-4\"")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    sweep = make_sweep(args)

    kept = load_state(sweep)  # written atomically: readable without the lock
    try:
        for seed in sweep.seeds:
            row = sweep_seed(sweep, seed, kept.get(str(seed)))
            with state_lock(sweep):
                kept = record_row(sweep, row)
                write_report(sweep, kept, args.out, args.small)
    except Interrupted as err:
        print(f"{err}; run the same command again to resume the sweep", flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
