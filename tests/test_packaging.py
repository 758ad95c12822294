"""The distribution: one import name, everything inside it, and a wheel
that works on its own.

The wheel is built from a copy of the source files (pyproject.toml, README.md and the package
directories), so the build's ``build/`` and ``*.egg-info`` never land in the shared tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# What the sources of the wheel are: the repository folders that pyproject.toml maps to packages.
SOURCE_DIRS = {"ntm": "ntm", "cli": "ntm/cli", "export": "ntm/export", "serving": "ntm/serving"}


def clean_env() -> dict[str, str]:
    """The environment without anything that would put the repository on sys.path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME",
                                                              "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in SOURCE_DIRS:
        shutil.copytree(REPO / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(out), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (built,) = out.glob("ntm-*.whl")
    return built


def test_wheel_holds_one_import_name_and_everything_under_it(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        record = {line.split(",")[0] for line in zf.read(f"{info}/RECORD").decode().splitlines()
                  if line}
        top_level = zf.read(f"{info}/top_level.txt").decode().split()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert info.startswith("ntm-") and info.endswith(".dist-info")
    assert set(names) == record, f"namelist and RECORD differ: {set(names) ^ record}"
    stray = [n for n in names if not n.startswith(("ntm/", f"{info}/"))]
    assert not stray, f"files outside ntm/ and {info}/: {stray}"
    assert top_level == ["ntm"]
    assert "ntm = ntm.cli.main:main" in entry_points

    must = {"ntm/__init__.py", "ntm/cli/main.py", "ntm/serving/app.py",
            "ntm/export/exporter.py", "ntm/contract/tasks/registry.py",
            "ntm/serving/page/index.html", "ntm/serving/page/app.js",
            "ntm/serving/page/app.css"}
    for model in ("copy", "recall", "repeat-copy"):
        must |= {f"ntm/pretrained/{model}.onnx", f"ntm/pretrained/{model}.json"}
    assert must <= set(names), f"missing from the wheel: {sorted(must - set(names))}"
    # every source module and page file of the repository folders is in the wheel
    source = {f"{prefix}/{p.relative_to(REPO / folder).as_posix()}"
              for folder, prefix in SOURCE_DIRS.items()
              for p in (REPO / folder).rglob("*")
              if p.is_file() and p.suffix in (".py", ".html", ".js", ".css", ".onnx")
              and "__pycache__" not in p.parts}
    assert source <= set(names), f"in the source but not the wheel: {sorted(source - set(names))}"


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A new virtual environment holding the wheel and its base dependencies, nothing else.

    The dependencies come from the package index through pip, from its cache: ``venv
    --without-pip`` takes 0.2 s and the .venv's pip installs into it with ``--python``; measured
    on this 2-core machine, 17-18 s with bytecode compilation when quiet, 34-53 s under load
    (a training run and other tests), and with ``--no-compile`` 24 s instead of 37 s at load 5
    (the bytecode is written on first import instead). That is the honest check: pip resolves exactly what pyproject.toml declares, and nothing else
    is there (no TensorFlow, no dev tools). Reusing .venv's site-packages through a .pth file would
    be faster but would hand the new environment every package of the dev install, TensorFlow
    included, and .venv's own ``ntm`` distribution (the editable install's dist-info and finder),
    so a missing dependency or a file left out of the wheel could go unnoticed.
    """
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                          "install", "-q", "--no-compile", str(wheel)],
                         capture_output=True, text=True, timeout=600, env=clean_env())
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"fresh venv: wheel + base dependencies installed in {time.monotonic() - start:.1f} s")
    return venv


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working directory outside the repository (./ntm, ./serving are not importable)."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy2(EXAMPLES / "copy.json", work / "copy.json")
    return work


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_answers_ntm_predict(fresh_venv, elsewhere):
    python = fresh_venv / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import importlib.util as u, ntm, ntm.serving.app, ntm.cli.main; "
         "print(ntm.__file__); print(u.find_spec('tensorflow') is None)"],
        cwd=elsewhere, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-3000:]
    ntm_file, no_tensorflow = where.stdout.split()
    assert Path(ntm_file).is_relative_to(fresh_venv), f"ntm imported from {ntm_file}, not the wheel"
    assert no_tensorflow == "True", "the base install pulled in TensorFlow"

    run = subprocess.run([str(fresh_venv / "bin" / "ntm"), "predict", "copy.json"],
                         cwd=elsewhere, env=clean_env(), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    (answer,) = json.loads(run.stdout)["predictions"]
    request = json.loads((elsewhere / "copy.json").read_text())
    assert answer["output"] == request["sequence"]  # the bundled copy model copies it exactly
    assert answer["within_training_range"] is True and answer["memory_size"] == 128


def check_ntm_serve(command: list[str], cwd: Path) -> None:
    """Start ``ntm serve`` (``command``: how to run ``ntm``) in ``cwd``; its page and task API
    answer; SIGTERM stops it with exit code 0."""
    from tests.serving.conftest import wait_until

    proc = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", "0", "--model",
                             "copy"], cwd=cwd, env=clean_env(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []

    def listening():
        line = proc.stderr.readline()
        lines.append(line)
        if not line and proc.poll() is not None:
            raise AssertionError("ntm serve exited:\n" + "".join(lines[-30:]))
        return re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)

    try:
        url = wait_until(listening, "ntm serve to listen").group(1)
        page = httpx.get(url + "/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:500]
        answer = httpx.post(url + "/v1/models/copy:predict",
                            content=(EXAMPLES / "copy.json").read_bytes(), timeout=30)
        assert answer.status_code == 200, answer.text
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(30) == 0, "".join(lines[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_serves_the_page_and_the_api(fresh_venv, elsewhere):
    check_ntm_serve([str(fresh_venv / "bin" / "ntm")], elsewhere)


def test_editable_install_imports_from_another_directory(tmp_path):
    """The development install (``pip install -e .``) maps ntm.cli, ntm.export and ntm.serving
    to the repository folders wherever Python starts."""
    code = ("import ntm, ntm.serving, ntm.cli.main, ntm.export, ntm.contract.tasks\n"
            "for m in (ntm, ntm.serving, ntm.cli.main, ntm.export): print(m.__file__)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    files = [Path(line) for line in run.stdout.split()]
    assert files == [REPO / "ntm" / "__init__.py", REPO / "serving" / "__init__.py",
                     REPO / "cli" / "main.py", REPO / "export" / "__init__.py"]
    version = subprocess.run([str(Path(sys.executable).parent / "ntm"), "--version"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                             timeout=120)
    assert version.returncode == 0 and "ntm, version" in version.stdout, version.stderr


def test_editable_install_serves_from_another_directory(elsewhere):
    check_ntm_serve([str(Path(sys.executable).parent / "ntm")], elsewhere)


def test_pyproject_lists_every_package():
    """Each folder of Python files under the package folders is a listed package (else the
    wheel silently leaves it out)."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for folder, prefix in SOURCE_DIRS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            found.add(".".join([*prefix.split("/"), *parts]))
    assert found == listed, f"packages on disk {sorted(found)} vs pyproject.toml {sorted(listed)}"
