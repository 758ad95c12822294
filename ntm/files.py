"""Writing files so that a crash never leaves a half-written one (no TensorFlow here).

Every file the project writes for later reading (config.json, summary.json, metrics.jsonl when
rewritten, evaluation tables, model cards, PNG figures) goes through ``atomic_file``: the data
goes to a temporary file beside the target, is flushed to disk, and replaces the target by a
rename, so a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (``mode``: "w", "wb" or "w+b"); when the block
    ends without an error, flush it to disk and rename it over ``path``; on an error, remove
    it and leave ``path`` as it was. Parent directories are created.

    The temporary file is hidden and unique to this process (``.NAME.PID.tmp``), so two
    processes writing the same target never mix their data. (Not ``tempfile.mkstemp``: its
    files are private, 0600, and would stay so after the rename.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through ``atomic_file``."""
    with atomic_file(path) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any, trailing_newline: bool = False) -> None:
    """Write ``data`` as indented JSON to ``path`` through ``atomic_file``."""
    write_text_atomic(path, json.dumps(data, indent=2) + ("\n" if trailing_newline else ""))
