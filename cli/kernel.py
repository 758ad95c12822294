"""``ntm build-kernel``: compile the fused NTM kernel (``kernels/``) where it will run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("build-kernel", short_help="Build the fused kernel (an onnxruntime custom op).")
@click.option("--headers", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A folder holding onnxruntime_cxx_api.h [default: fetch Debian's "
                   "libonnxruntime-dev into the user's cache, without touching the system].")
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where the library goes [default: inside the package when it is writable, "
                   "else ~/.cache/ntm/kernel/]. Elsewhere: point NTM_OPS_LIBRARY at it.")
@click.option("--sanitize", is_flag=True, default=False,
              help="Build with AddressSanitizer and UndefinedBehaviorSanitizer (a process "
                   "that loads it needs LD_PRELOAD of libasan; for tests).")
@click.option("--portable", is_flag=True, default=False,
              help="No -march=native: a library for other machines of the same architecture.")
def build_kernel(headers: Path | None, out: Path | None, sanitize: bool, portable: bool) -> None:
    """Compile libntm_ops.so from the repository's kernels/ with g++ (C++17).

    Models exported with `ntm export --kernel fused`, and the fused twins of the bundled models,
    run on it; `ntm serve`, `ntm predict` and `ntm.load` use it when it loads (--engine).
    """
    from ntm.kernel.build import BuildError, build

    try:
        path = build(out, headers, sanitize, portable)
    except BuildError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"built {path}" + (" (sanitized)" if sanitize else ""))
