"""onnxruntime's C and C++ API headers, which its pip wheel does not ship.

Debian's ``libonnxruntime-dev`` (trixie) carries them. They are fetched without touching the
system: a private apt state (its own source list, package lists and cache under ``dest``) with
one source that takes the mirror of the machine's own ``/etc/apt/sources.list.d/debian.sources``
and the suite ``trixie``; ``apt-get download`` then fetches the one package and ``dpkg-deb -x``
unpacks it. Nothing runs as root and nothing outside ``dest`` changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

HEADER = "onnxruntime_cxx_api.h"
PACKAGE = "libonnxruntime-dev"
SUITE = "trixie"
SYSTEM_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class HeadersError(RuntimeError):
    """The headers are not here and could not be fetched; the message says why."""


def find_headers(directory: Path) -> Path | None:
    """The folder under ``directory`` that holds ``onnxruntime_cxx_api.h``, or None."""
    if not directory.is_dir():
        return None
    for found in sorted(directory.rglob(HEADER)):
        return found.parent
    return None


def system_mirror(sources: Path = SYSTEM_SOURCES) -> str:
    """The first Debian (not -security) mirror URI of the machine's deb822 source list."""
    if sources.is_file():
        for uri in re.findall(r"^URIs:\s*(\S+)", sources.read_text(), flags=re.M):
            if "security" not in uri:
                return uri
    return DEFAULT_MIRROR


def fetch_headers(dest: Path) -> Path:
    """The include folder of ``libonnxruntime-dev`` unpacked under ``dest`` (fetched once).

    Raises HeadersError naming the step that failed (no apt, no network, no package).
    """
    found = find_headers(dest / "root")
    if found is not None:
        return found
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise HeadersError(f"fetching the onnxruntime headers needs {tool} (Debian); "
                               f"or pass --headers DIR holding {HEADER}")
    state = dest / "apt"
    parts = state / "sources.list.d"
    lists = state / "lists"
    cache = state / "cache"
    for folder in (parts, lists / "partial", cache / "archives" / "partial"):
        folder.mkdir(parents=True, exist_ok=True)
    (parts / "trixie.sources").write_text(
        f"Types: deb\nURIs: {system_mirror()}\nSuites: {SUITE}\nComponents: main\n"
        f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    options = ["-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={parts}",
               "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}",
               "-o", "Dir::State::status=/dev/null", "-o", "Debug::NoLocking=1",
               "-o", "APT::Sandbox::User=" + os.environ.get("USER", "root")]
    download = dest / "debs"
    download.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", *options, "update"], "apt-get update (a private package list)", dest)
    _run(["apt-get", *options, "download", PACKAGE], f"apt-get download {PACKAGE}", download)
    debs = sorted(download.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise HeadersError(f"apt-get download {PACKAGE} left no .deb in {download}")
    _run(["dpkg-deb", "-x", str(debs[-1]), str(dest / "root")], "dpkg-deb -x", dest)
    found = find_headers(dest / "root")
    if found is None:
        raise HeadersError(f"{debs[-1].name} holds no {HEADER}")
    return found


def _run(command: list[str], what: str, cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HeadersError(f"{what} failed: {last[0]}")
