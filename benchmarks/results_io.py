"""Where every benchmark writes: ``OUT/NAME.json`` (the figures) and ``OUT/NAME.md`` (the table
the README shows), with ``_small`` appended in small mode so tests never overwrite results."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(out: Path, name: str, small: bool, result: dict, markdown: str) -> None:
    """Write the JSON and Markdown of one benchmark run and print the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    stem = name + ("_small" if small else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
