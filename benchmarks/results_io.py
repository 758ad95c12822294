"""Where every benchmark writes: ``OUT/NAME.json`` (the figures) and ``OUT/NAME.md`` (the table
the README shows), with ``_small`` appended in small mode so tests never overwrite results."""

from __future__ import annotations

import json
from pathlib import Path


def _stem(name: str, small: bool) -> str:
    return name + ("_small" if small else "")


def read_results(out: Path, name: str, small: bool) -> dict | None:
    """The JSON a previous run of benchmark NAME wrote to ``out``; None when there is none (or
    it is unreadable). For benchmarks that add to their results rather than replace them."""
    try:
        return json.loads((out / f"{_stem(name, small)}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_results(out: Path, name: str, small: bool, result: dict, markdown: str) -> None:
    """Write the JSON and Markdown of one benchmark run and print the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    stem = _stem(name, small)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
