"""Where the built fused kernel ``libntm_ops.so`` is, and registering it with an onnxruntime
session: what the export (which writes models that need it) and serving (which runs them) share.

Looked for, in order: the file ``$NTM_OPS_LIBRARY`` names; ``ntm/kernel/lib/`` inside the
installed package (where ``ntm build-kernel`` writes when it can); the user's cache
(``$XDG_CACHE_HOME/ntm/kernel/``, else ``~/.cache/ntm/kernel/``). NumPy-free and
TensorFlow-free: serving imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

LIBRARY_NAME = "libntm_ops.so"
ENV_VAR = "NTM_OPS_LIBRARY"
DOMAIN = "ai.ntm"  # the ops' ONNX domain
OP_NAMES = {"dynamic": "NTM", "stateful": "NTMSequence", "ragged": "NTMRagged"}
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "kernel" / "lib"  # ntm/kernel/lib


class KernelUnavailable(RuntimeError):
    """The fused kernel cannot be used here; the message says why and what to do."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ntm" / "kernel"


def candidates() -> list[Path]:
    """Where the library is looked for, in order."""
    named = os.environ.get(ENV_VAR)
    if named:
        return [Path(named)]
    return [PACKAGE_DIR / LIBRARY_NAME, cache_dir() / LIBRARY_NAME]


def find_library() -> Path | None:
    """The first built library found, or None."""
    for path in candidates():
        if path.is_file():
            return path
    return None


def require_library() -> Path:
    """The library's path; KernelUnavailable saying where it was looked for when absent."""
    found = find_library()
    if found is None:
        where = ", ".join(str(p) for p in candidates())
        raise KernelUnavailable(f"the fused kernel is not built (looked in {where}); run "
                                f"`ntm build-kernel` in a checkout of the repository")
    return found


def register(options, path: Path | None = None) -> Path:
    """Register the library with an ``onnxruntime.SessionOptions``; returns its path.

    Raises KernelUnavailable when it is missing or onnxruntime refuses it."""
    path = path or require_library()
    try:
        options.register_custom_ops_library(str(path))
    except Exception as err:  # onnxruntime raises its own Fail/RuntimeException types
        raise KernelUnavailable(f"onnxruntime could not load {path}: {err}") from None
    return path


def uses_kernel(domains: list[str]) -> bool:
    """True when a model's opset imports (their domains) include the fused ops'."""
    return DOMAIN in domains
