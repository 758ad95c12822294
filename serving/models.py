"""Where models come from: a path, your own export under ``exports/``, or a bundled model.

Names resolve in this order:
1. an existing path: an ``.onnx`` file, or a Triton model directory (``NAME/1/model.onnx``);
2. ``exports/NAME/NAME.onnx``: what ``ntm export`` writes by default (your latest model);
3. a bundled pretrained model (``ntm/pretrained/NAME.onnx``).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from ntm.contract.metadata import EXPORTS_ROOT
from ntm.serving.errors import NotFound



def bundled_dir() -> Path:
    return Path(str(resources.files("ntm.pretrained")))


FUSED_SUFFIX = ".fused.onnx"  # a model's fused twin: NAME.fused.onnx beside NAME.onnx


def fused_twin(path: Path) -> Path:
    """Where the fused twin of the model at ``path`` lies (it may not exist)."""
    path = Path(path)
    if path.name.endswith(FUSED_SUFFIX):
        return path
    return path.with_name(path.name.removesuffix(".onnx") + FUSED_SUFFIX)


def standard_twin(path: Path) -> Path:
    """The standard model a fused twin was made from (the path itself when not a twin)."""
    path = Path(path)
    if not path.name.endswith(FUSED_SUFFIX):
        return path
    return path.with_name(path.name.removesuffix(FUSED_SUFFIX) + ".onnx")


def bundled_models() -> dict[str, Path]:
    """{name: path} of the pretrained models inside the package (their fused twins are not
    models of their own: ``ntm.serving.runtime`` picks one by ``--engine``)."""
    return {p.stem: p for p in sorted(bundled_dir().glob("*.onnx"))
            if not p.name.endswith(FUSED_SUFFIX)}


def model_card(name: str) -> dict[str, Any]:
    """The JSON model card of a bundled model ({} when there is none)."""
    path = bundled_dir() / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def exported_models(root: Path = EXPORTS_ROOT) -> dict[str, Path]:
    """{name: path} of dynamic-length exports at ``exports/NAME/NAME.onnx``."""
    return {p.stem: p for p in sorted(Path(root).glob("*/*.onnx")) if p.stem == p.parent.name}


def resolve(spec: str, root: Path = EXPORTS_ROOT) -> Path:
    """A model NAME or PATH -> the ``.onnx`` file; NotFound lists what is available."""
    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        candidates = sorted(path.glob("*.onnx")) or sorted(path.glob("[0-9]*/model.onnx"))
        if candidates:
            return candidates[-1]
        raise NotFound(f"model directory {spec} holds no .onnx file")
    exported = exported_models(root)
    if spec in exported:
        return exported[spec]
    bundled = bundled_models()
    if spec in bundled:
        return bundled[spec]
    known = sorted(set(exported) | set(bundled))
    raise NotFound(f"unknown model {spec!r}: not a file, not an export under {root}/, not "
                   f"bundled; available: {', '.join(known) or 'none'}")


def default_models(root: Path = EXPORTS_ROOT) -> dict[str, Path]:
    """What ``ntm serve`` serves with no ``--model``: every bundled model, replaced by your
    own export of the same name when ``exports/NAME/NAME.onnx`` exists."""
    return {**bundled_models(), **exported_models(root)}


def parse_model_option(value: str) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); ``NAME`` or ``PATH`` -> (None, value)."""
    if "=" in value:
        name, _, spec = value.partition("=")
        if not name or not spec:
            raise NotFound(f"--model {value!r}: expected NAME=PATH, NAME or PATH")
        return name, spec
    return None, value
