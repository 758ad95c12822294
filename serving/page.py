"""The browser page of ``ntm serve``: ``GET /`` and its two assets, plus the model cards.

The page (``serving/page/``: one HTML, one JS, one CSS file; no build step, nothing fetched from
elsewhere) runs requests through the server's own task API with ``return_attention`` and draws
the answer and the attention over time. Every URL in it is relative, so it works behind a proxy
that serves it under a path prefix.

Routes (none of them in the OpenAPI document: they are not part of the API):
- ``GET /``, ``GET /page/app.js``, ``GET /page/app.css``: the page, public (PUBLIC_PATHS) so that
  a person can load it and type the API key into it; the page sends the key with its API calls
  and the server stores nothing.
- ``GET /page/cards.json``: for each served model, its task's description (name, training range,
  request fields and an example request the task builds itself, see ``task_description``) and,
  for a bundled model, the figures of its model card (training and held-out evaluation); behind
  the API key like the model listing. The page has editors of its own for the built-in tasks;
  for any other (a plug-in, ``ntm.contract.tasks.registry``) it offers the example as JSON.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ntm.contract.tasks import Difficulty, Task
from ntm.serving.models import bundled_models, model_card, standard_twin

ASSETS = {"index.html": "text/html; charset=utf-8",
          "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}
PUBLIC_PATHS = ("/", "/page/app.js", "/page/app.css")
# Served fresh on every load: a page from an older server must not outlive an upgrade.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
CARD_FIELDS = ("steps", "sequences_seen", "train_wall_seconds", "seed", "train_lengths",
               "train_repeats", "all_bars_met")
EVALUATION_FIELDS = ("length", "repeats", "mean_bits", "perfect_fraction", "memory_size")
EXAMPLE_SEED = 0  # the example request is the same on every load and every restart


def asset_dir() -> Path:
    return Path(str(resources.files("ntm.serving"))) / "page"


def read_assets() -> dict[str, bytes]:
    """{file name: bytes} of the page, read once when the app is built."""
    return {name: (asset_dir() / name).read_bytes() for name in ASSETS}


def card_figures(path: Path) -> dict[str, Any] | None:
    """The figures of the model card of a bundled model file, or None for any other file (an
    export of your own carries no card: its training figures are in ``/v1/models``). A fused
    twin has its standard model's card."""
    bundled = {p.resolve(): name for name, p in bundled_models().items()}
    name = bundled.get(standard_twin(Path(path)).resolve())
    card = model_card(name) if name else {}
    if not card:
        return None
    figures = {key: card.get(key) for key in CARD_FIELDS}
    figures["card"] = name
    figures["evaluation"] = [{key: row.get(key) for key in EVALUATION_FIELDS}
                             for row in card.get("evaluation", [])]
    return figures


def example_difficulty(task: Task) -> Difficulty:
    """The middle of the task's training ranges: a request the model was trained on."""
    lo, hi = task.train_lengths
    length = max(task.min_length, (lo + hi) // 2)
    repeats = sum(task.train_repeats) // 2 if task.train_repeats else None
    return Difficulty(length, repeats)


def _plain(value: Any) -> Any:
    """NumPy values a plug-in's example may hold -> JSON (json.dumps's ``default``)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def task_description(task: Task) -> dict[str, Any]:
    """What the page needs to offer a request to any task, built-in or plugged in: its name,
    its training range in words, its request fields and an example request built by the task
    (``request_example`` at ``example_difficulty``, seeded). A task that cannot build one gets
    ``example: null`` and ``example_error`` (the page then starts from ``{}``); the server
    still starts."""
    described: dict[str, Any] = {"name": task.name, "training_range": task.training_range(),
                                 "request_keys": list(task.request_keys)}
    try:
        request, _ = task.request_example(np.random.default_rng(EXAMPLE_SEED),
                                          example_difficulty(task))
        described["example"] = json.loads(json.dumps(request, default=_plain))
    except Exception as err:  # a plug-in's bug must not take the page down
        described["example"] = None
        described["example_error"] = f"{type(err).__name__}: {err}"
    return described


def router(runtimes: dict) -> APIRouter:
    """The page's routes; ``runtimes`` is {served name: ModelRuntime}."""
    assets = read_assets()
    cards = {name: {"card": card_figures(r.path),
                    "parameters": r.metadata["ntm.task"].get("parameters", {}),
                    "task": task_description(r.task)}
             for name, r in runtimes.items()}

    api = APIRouter(include_in_schema=False)  # not part of the API

    def asset(name: str) -> Response:
        return Response(assets[name], media_type=ASSETS[name], headers=HEADERS)

    @api.get("/")
    async def page():
        return asset("index.html")

    @api.get("/page/app.js")
    async def page_script():
        return asset("app.js")

    @api.get("/page/app.css")
    async def page_style():
        return asset("app.css")

    @api.get("/page/cards.json")
    async def page_cards():
        return JSONResponse({"models": cards}, headers=HEADERS)

    return api
