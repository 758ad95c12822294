"""The import graph, read from the source with ``ast``.

- serving imports only ``ntm`` (the root package), ``ntm.contract.*`` and ``ntm.serving.*``,
  at module level or inside functions: the server never reaches TensorFlow, the CLI or export;
- ``ntm.contract`` imports nothing of the project outside itself (and the root package);
- no import cycle among the project's modules, through any import: module-level, inside a
  function or under ``if TYPE_CHECKING:`` (a cycle a function-level import closes is still one);
- no function longer than 60 lines in serving/ and cli/.

Files map to module names the way the wheel installs them: the packages and ``package-dir`` of
pyproject.toml (``cli/x.py`` -> ``ntm.cli.x``, ``serving/x.py`` -> ``ntm.serving.x``). A run-time
check in a fresh process backs the parsed graph: importing every serving module loads nothing
of the project outside the allowed layers.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
ROOT_PACKAGE = "ntm"
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is, and whether it runs at import time."""

    source: str  # importing module, e.g. ntm.serving.app
    target: str  # imported project module, e.g. ntm.contract.tasks
    path: Path
    line: int
    module_level: bool  # False inside a function (or under ``if TYPE_CHECKING:``)

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line} imports {self.target}"


@cache
def package_dirs() -> dict[str, Path]:
    """{package: directory} from pyproject.toml's ``packages`` and ``package-dir``, resolved
    as setuptools does (the longest mapped prefix, else the repository root)."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools.get("package-dir", {})
    dirs = {}
    for package in setuptools["packages"]:
        parts = package.split(".")
        for cut in range(len(parts), -1, -1):
            prefix = ".".join(parts[:cut])
            if prefix in mapping or cut == 0:
                base = REPO / mapping.get(prefix, "")
                dirs[package] = base.joinpath(*parts[cut:])
                break
    return dirs


@cache
def modules() -> dict[str, Path]:
    """{module name: file} of every module the wheel installs."""
    found = {}
    for package, directory in package_dirs().items():
        assert (directory / "__init__.py").is_file(), f"package {package}: no {directory}/__init__.py"
        for path in sorted(directory.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The project modules an import statement loads (``from P import name`` loads P.name when
    that is a module, else P itself)."""
    known = modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against the importing package
            package = module if is_package else module.rpartition(".")[0]
            parent = package.split(".")
            parent = parent[: len(parent) - (node.level - 1)]
            base = ".".join(parent + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                 for alias in node.names]
    return [n for n in dict.fromkeys(names)
            if n == ROOT_PACKAGE or n.startswith(ROOT_PACKAGE + ".")]


def imports_of(module: str, path: Path) -> list[Import]:
    """Every project import in one module's source, with its place and kind."""
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _targets(node, module, is_package):
                found.append(Import(module, target, path, node.lineno, module_level))
        for child in ast.iter_child_nodes(node):
            inside = module_level and not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body:
                inside = False
            visit(child, inside)

    visit(tree, True)
    return found


@cache
def imports() -> tuple[Import, ...]:
    """Every project import in every installed module."""
    return tuple(imp for module, path in modules().items() for imp in imports_of(module, path))


def outside(found, layer: str, allowed: tuple[str, ...]) -> list[str]:
    """The imports in ``found`` made by modules of ``layer`` whose target is neither the root
    package nor under one of ``allowed``, as messages naming file, line and module."""
    return [imp.where() + ("" if imp.module_level else " (inside a function)")
            for imp in found
            if (imp.source == layer or imp.source.startswith(layer + "."))
            and imp.target != ROOT_PACKAGE
            and not any(imp.target == p or imp.target.startswith(p + ".") for p in allowed)]


def test_the_module_map_covers_the_source_tree():
    """Guards the tests below: they read what the wheel installs, so a .py file under a package
    directory but in no listed package would escape them (and the wheel)."""
    listed = set(modules().values())
    for directory in {d.relative_to(REPO).parts[0] for d in package_dirs().values()}:
        stray = [p.relative_to(REPO) for p in (REPO / directory).rglob("*.py")
                 if p not in listed and "__pycache__" not in p.parts]
        assert not stray, f"not in any package of pyproject.toml: {stray}"
    assert {"ntm.serving.app", "ntm.cli.main", "ntm.export.exporter",
            "ntm.contract.tasks.registry", "ntm.model"} <= set(modules())


def test_serving_imports_only_the_contract_and_itself():
    bad = outside(imports(), "ntm.serving", ("ntm.contract", "ntm.serving"))
    assert not bad, "serving must import only ntm, ntm.contract.* and ntm.serving.*:\n" + \
        "\n".join(bad)


def test_contract_imports_nothing_of_the_project_outside_itself():
    bad = outside(imports(), "ntm.contract", ("ntm.contract",))
    assert not bad, "ntm.contract must import only ntm and ntm.contract.*:\n" + "\n".join(bad)


def test_the_checks_see_a_forbidden_import(tmp_path):
    """The parser finds imports inside functions, relative ones and ``from P import module``."""
    fake = REPO / "serving" / "fake.py"  # never written: the source is parsed from tmp_path
    source = tmp_path / "fake.py"
    source.write_text("import os\nfrom ntm.contract import tasks\nfrom ntm import __version__\n"
                      "def f():\n    from ntm.training import trainer\n    from ..cli import main\n")
    found = [Import(i.source, i.target, fake, i.line, i.module_level)
             for i in imports_of("ntm.serving.fake", source)]
    assert {(i.target, i.module_level) for i in found} == {
        ("ntm.contract.tasks", True), ("ntm", True), ("ntm.training.trainer", False),
        ("ntm.cli.main", False)}
    assert outside(found, "ntm.serving", ("ntm.contract", "ntm.serving")) == [
        "serving/fake.py:5 imports ntm.training.trainer (inside a function)",
        "serving/fake.py:6 imports ntm.cli.main (inside a function)"]


def _cycle(graph: dict[str, list[Import]]) -> list[Import] | None:
    """One cycle in ``graph``, as its edges, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[Import] = []

    def visit(module: str) -> list[Import] | None:
        state[module] = 1
        for edge in graph.get(module, []):
            if state.get(edge.target) == 1:
                start = next((i for i, e in enumerate(stack) if e.source == edge.target),
                             len(stack))
                return stack[start:] + [edge]
            if edge.target not in state:
                stack.append(edge)
                if found := visit(edge.target):
                    return found
                stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def import_graph(found) -> dict[str, list[Import]]:
    """{module: its imports of other project modules}, every kind of import counted (the root
    package aside: every submodule loads it first anyway)."""
    graph: dict[str, list[Import]] = {}
    for imp in found:
        if imp.target != imp.source and imp.target != ROOT_PACKAGE:
            graph.setdefault(imp.source, []).append(imp)
    return graph


def test_no_import_cycles():
    cycle = _cycle(import_graph(imports()))
    assert cycle is None, "import cycle:\n" + "\n".join(
        edge.where() + ("" if edge.module_level else " (inside a function or TYPE_CHECKING)")
        for edge in cycle)


def test_the_cycle_check_sees_a_cycle_a_function_level_import_closes(tmp_path):
    """plane imports runtime at module level; runtime imports plane inside a function (or under
    TYPE_CHECKING): a cycle, found."""
    plane, runtime = tmp_path / "plane.py", tmp_path / "runtime.py"
    plane.write_text("from ntm.serving.runtime import ModelRuntime\n")
    runtime.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                       "    from ntm.serving.stateful import X\n"
                       "def predict():\n    from ntm.serving.plane import predict_tasks\n")
    found = imports_of("ntm.serving.plane", plane) + imports_of("ntm.serving.runtime", runtime)
    cycle = _cycle(import_graph(found))
    assert cycle is not None and [(e.source, e.target, e.module_level) for e in cycle] == [
        ("ntm.serving.plane", "ntm.serving.runtime", True),
        ("ntm.serving.runtime", "ntm.serving.plane", False)]
    a, b = (Import(x, y, REPO / "f.py", 1, True) for x, y in (("a", "b"), ("b", "a")))
    assert _cycle({"a": [a], "b": [b]}) == [a, b]


def test_importing_serving_loads_no_other_layer():
    """At run time too: a fresh process importing every serving module has loaded no project
    module outside ntm, ntm.contract.* and ntm.serving.*."""
    serving = [m for m in modules() if m.startswith("ntm.serving")]
    code = (f"import sys\nimport {', '.join(serving)}\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('ntm')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = run.stdout.split()
    assert "ntm.serving.app" in loaded
    bad = [m for m in loaded if m != "ntm" and not m.startswith(("ntm.contract", "ntm.serving"))]
    assert not bad, f"importing serving loaded {bad}"


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions in serving/ and cli/ longer than ``limit`` lines (``def`` to last line)."""
    found = []
    for module, path in modules().items():
        if not module.startswith(("ntm.serving", "ntm.cli")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: "
                                 f"{lines} lines")
    return found


def test_no_function_longer_than_60_lines_in_serving_and_cli():
    offenders = long_functions()
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


def test_only_the_cli_imports_the_cli():
    """The CLI is the top layer: the library, export and serving never import it."""
    bad = [imp.where() for imp in imports()
           if imp.target.startswith("ntm.cli") and not imp.source.startswith("ntm.cli")]
    assert not bad, "only ntm.cli.* may import ntm.cli:\n" + "\n".join(bad)
