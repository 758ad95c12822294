"""``ntm models``: what ``ntm serve`` and ``ntm predict`` can run, with headline figures."""

from __future__ import annotations

import json

import click


@click.command(short_help="List bundled and exported models.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """List the bundled pretrained models (with their model cards' headline figures) and your
    exports under exports/ (an export replaces the bundled model of the same name)."""
    from ntm.serving.errors import ServingError
    from ntm.serving.models import bundled_models, default_models, exported_models, model_card
    from ntm.serving.runtime import ModelRuntime

    served = default_models()  # what each name means to `ntm serve` and `ntm predict`
    rows = []
    for source, found in (("bundled", bundled_models()), ("export", exported_models())):
        for name, path in found.items():
            row = {"name": name, "source": source, "path": str(path),
                   "served": served.get(name) == path}
            try:
                info = ModelRuntime(path).describe()
                row.update(task=info["task"], mode=info["mode"],
                           training_sequences=info["training_sequences"])
            except ServingError as err:
                row["error"] = err.message
            card = model_card(name) if source == "bundled" else {}
            if card:
                row["bars"] = {b["point"]: b["measured"] for b in card["quality_bars"]}
                row["train_minutes"] = round(card["train_wall_seconds"] / 60, 1)
            rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no models: none bundled, none under exports/")
        return
    for r in rows:
        mark = "*" if r["served"] else " "
        if "error" in r:
            click.echo(f"{mark} {r['name']:<12} {r['source']:<8} UNUSABLE: {r['error']}")
            continue
        bars = ", ".join(f"{k}: {v:.2f} bits/seq" for k, v in r.get("bars", {}).items())
        extra = f"  trained {r['train_minutes']} min; {bars}" if "bars" in r else ""
        click.echo(f"{mark} {r['name']:<12} {r['source']:<8} {r['mode']:<8} {r['path']}{extra}")
    if any(not r["served"] for r in rows):
        click.echo("* what the name means to `ntm serve` and `ntm predict` (an export replaces "
                   "the bundled model of its name)")
