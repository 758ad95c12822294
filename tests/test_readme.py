"""The README is a front door that works: at most 200 lines, its test command is what CI runs,
and every command it shows runs (training and evaluation with a smaller budget, servers on free
ports). The tree carries no issue numbers, commit ids or dated lab notes."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import ServerProcess

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# What the tests change in a README command: a budget a test can afford.
SMALLER = {"train": ["--steps", "20", "--eval-every", "10", "--eval-size", "8",
                     "--checkpoint-every", "10", "--log-every", "10"],
           "evaluate": ["--points", "5,10"]}


def blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)


def shown_commands() -> list[list[str]]:
    """Every command line of the README's tour (lines starting with ntm, curl or python
    examples/), comments dropped."""
    tour = README[README.index("## A short tour"):README.index("## Python library")]
    lines = [line.split("#")[0].strip() for block in blocks(tour) for line in block.splitlines()]
    return [shlex.split(line) for line in lines
            if line.startswith(("ntm ", "curl ", "python examples/"))]


def test_the_readme_is_a_front_door():
    assert len(README.splitlines()) <= 200
    ci = (REPO / ".ci" / "run").read_text()
    commands = [b.strip() for b in blocks(README[README.index("## Two commands"):])[:2]]
    assert commands[1] in ci, "the README's test command is not what .ci/run runs"
    assert commands[0].endswith("ntm predict examples/copy.json --pretty")
    for link in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (REPO / link).is_file(), f"README links to {link}, which does not exist"


def test_the_first_command_prints_what_the_readme_says(tmp_path):
    shown = blocks(README[README.index("What the first one prints"):])[0]
    run = subprocess.run([sys.executable, "-m", "ntm.cli.main", "predict",
                          str(REPO / "examples" / "copy.json"), "--pretty"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    for line in shown.splitlines():
        if line.strip() != "..." and "..." not in line:
            assert line in run.stdout.splitlines(), f"{line!r} not printed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_command_of_the_tour_runs(tmp_path):
    """In an empty directory with the examples beside it, as a user who cloned the repository
    runs them: train (a smaller budget), evaluate, export, serve, the clients, predict, models,
    plot."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("matplotlib")
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = dict(os.environ)
    server = None
    ports: dict[str, str] = {}
    try:
        for command in shown_commands():
            if command[0] == "ntm" and command[1] == "serve":
                ports = {"8080": str(free_port()), "8081": str(free_port())}
                args = [ports.get(a, a) for a in command[2:]]
                server = ServerProcess(args, cwd=tmp_path)  # serves the export made above
                continue
            if command[0] == "curl":
                url = next(a for a in command if "localhost:" in a)
                url = "http://" + url.replace("localhost:8080", f"127.0.0.1:{ports['8080']}")
                body = next(a for a in command if a.startswith("@"))[1:]
                answer = httpx.post(url, content=(tmp_path / body).read_bytes(), timeout=60)
                assert answer.status_code == 200, answer.text
                continue
            if command[0] == "python":
                args = [re.sub(r":(808[01])$", lambda m: ":" + ports[m.group(1)], a)
                        for a in command[1:]]
                run = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env,
                                     capture_output=True, text=True, timeout=120)
                assert run.returncode == 0, (command, run.stderr[-2000:])
                continue
            args = command[1:] + SMALLER.get(command[1], [])
            run = subprocess.run([sys.executable, "-m", "ntm.cli.main", *args], cwd=tmp_path,
                                 env=env, capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, (command, run.stderr[-2000:])
    finally:
        if server is not None:
            server.stop()
    assert (tmp_path / "exports" / "copy" / "copy.onnx").is_file()
    assert (tmp_path / "attention.png").is_file()


HISTORY = re.compile(r"\b[Ii]ssue ?#?\d+|\bsession \d+\b|\b20\d\d-[01]\d-[0-3]\d\b|"
                     r"\bcommit [0-9a-f]{7,40}\b")


def test_no_issue_numbers_commit_ids_or_dated_notes_in_the_tree():
    """History is git log: the product folders, the README, docs/ and every --help say what
    is, not when or for which issue."""
    from click.testing import CliRunner

    from ntm.cli.main import cli

    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for folder in ("ntm", "cli", "export", "serving"):
        files += [p for p in (REPO / folder).rglob("*")
                  if p.suffix in (".py", ".md", ".json", ".js", ".html", ".css")]
    found = [f"{p.relative_to(REPO)}:{i}: {line.strip()[:100]}"
             for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
             if HISTORY.search(line)]
    helps = [CliRunner().invoke(cli, [*name, "--help"]).output
             for name in ([], ["train"], ["evaluate"], ["export"], ["predict"], ["serve"],
                          ["models"], ["plot"])]
    found += [f"--help: {line}" for text in helps for line in text.splitlines()
              if HISTORY.search(line)]
    assert not found, "\n".join(found)
