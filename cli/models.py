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
                row["headline"] = headline(card)
                row["train_minutes"] = round(card["train_wall_seconds"] / 60, 1)
            rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no models: none bundled, none under exports/")
        return
    width = max(12, *(len(r["name"]) for r in rows))
    for r in rows:
        mark = "*" if r["served"] else " "
        if "error" in r:
            click.echo(f"{mark} {r['name']:<{width}} {r['source']:<8} UNUSABLE: {r['error']}")
            continue
        extra = f"  trained {r['train_minutes']} min; {r['headline']}" if "headline" in r else ""
        click.echo(f"{mark} {r['name']:<{width}} {r['source']:<8} {r['mode']:<8} {r['path']}"
                   f"{extra}")
    if any(not r["served"] for r in rows):
        click.echo("* what the name means to `ntm serve` and `ntm predict` (an export replaces "
                   "the bundled model of its name)")


def headline(card: dict) -> str:
    """A card's figures in a line: its quality bars, or (a task without bars) its row at the
    top of the training range; N-grams by its cost over the optimal estimator's."""
    if card["quality_bars"]:
        return ", ".join(f"{b['point']}: {b['measured']:.2f} bits/seq"
                         for b in card["quality_bars"])
    top = card["train_lengths"][1]
    row = next((r for r in card["evaluation"] if r["length"] == top), None)
    if row is None:
        return ""
    excess = (row.get("measures") or {}).get("excess_bits")
    if excess is not None:
        return (f"{top}: {row['measures']['cost_bits']:.1f} bits/seq cost, "
                f"{excess:.2f} over the optimal estimator")
    return f"{top}: {row['mean_bits']:.2f} bits/seq, {100 * row['perfect_fraction']:.0f}% perfect"
