"""Building ``libntm_ops.so`` from the repository's ``kernels/`` (``ntm build-kernel``).

One g++ command: C++17, the onnxruntime headers (``ntm.kernel.headers``), no link to
onnxruntime (the library only receives its API table at registration). ``-march=native`` unless
``portable``: the library is built on the machine that runs it. ``sanitize`` adds
AddressSanitizer and UndefinedBehaviorSanitizer (a process that loads it must preload libasan:
``sanitizer_preload``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ntm.kernel.headers import HEADER, HeadersError, fetch_headers, find_headers
from ntm.contract.kernel_library import LIBRARY_NAME, PACKAGE_DIR, cache_dir

SOURCE_DIR = Path(__file__).resolve().parents[2] / "kernels"
SOURCES = ("ntm_ops.cc",)


class BuildError(RuntimeError):
    """The library could not be built; the message says which step failed and why."""


def default_output() -> Path:
    """Inside the package when it is writable (an editable install), else the user's cache."""
    if os.access(PACKAGE_DIR.parent, os.W_OK):
        return PACKAGE_DIR / LIBRARY_NAME
    return cache_dir() / LIBRARY_NAME


def resolve_headers(headers: Path | None) -> Path:
    """The include folder: ``headers`` (checked), else fetched into the user's cache."""
    if headers is not None:
        found = find_headers(Path(headers))
        if found is None:
            raise BuildError(f"--headers {headers}: no {HEADER} under it")
        return found
    try:
        return fetch_headers(cache_dir() / "onnxruntime-headers")
    except HeadersError as err:
        raise BuildError(str(err)) from None


def compile_command(include: Path, out: Path, sanitize: bool = False,
                    portable: bool = False, compiler: str = "g++") -> list[str]:
    flags = ["-std=c++17", "-O3", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall",
             "-Wextra", "-Werror", "-fno-math-errno"]
    flags += [] if portable else ["-march=native"]
    if sanitize:
        flags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                  "-fno-sanitize-recover=undefined"]
    return [compiler, *flags, f"-I{include}", *(str(SOURCE_DIR / s) for s in SOURCES),
            "-o", str(out)]


def build(out: Path | None = None, headers: Path | None = None, sanitize: bool = False,
          portable: bool = False) -> Path:
    """Compile the library to ``out`` [default: ``default_output()``]; returns its path.

    Written beside the target and renamed, so a running server never maps a half-written file."""
    if not (SOURCE_DIR / SOURCES[0]).is_file():
        raise BuildError(f"the kernel's source is not here ({SOURCE_DIR}): build from a "
                         f"checkout of the repository (pip install -e .)")
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise BuildError(f"no C++ compiler ({compiler}) on PATH; install g++ (12 or newer)")
    include = resolve_headers(headers)
    out = Path(out) if out else default_output()
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".ntm_ops-", suffix=".so", dir=out.parent)
    os.close(handle)
    try:
        command = compile_command(include, Path(tmp), sanitize, portable, compiler)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise BuildError("the compiler failed:\n" + "\n".join(lines[:20]))
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def sanitizer_preload(compiler: str = "g++", library: str = "libasan.so") -> str:
    """The path of a runtime a process must preload before it loads a sanitized library:
    libasan, and libstdc++ (so that the sanitizer finds the C++ exception functions it wraps
    when the program, like Python, is not a C++ program)."""
    result = subprocess.run([compiler, f"-print-file-name={library}"], capture_output=True,
                            text=True, check=True)
    return result.stdout.strip()
