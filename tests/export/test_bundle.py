"""The model card a bundled model ships with (rendering only; bundling itself needs a run)."""

from ntm.export.bundle import render_card


def card(**extra):
    base = {
        "name": "repeat-copy", "task": "repeat-copy", "size_bytes": 270_000,
        "model": {"memory_size": 128, "memory_width": 20, "controller": "lstm",
                  "controller_size": 100, "num_read_heads": 1, "num_write_heads": 1},
        "train_lengths": [1, 10], "train_repeats": [1, 10],
        "export_max_abs_diff": 2.6e-3, "train_command": "ntm train --task repeat-copy",
        "export_command": "ntm export runs/rc --format onnx -o ntm/pretrained/repeat-copy.onnx",
        "seed": 2, "steps": 50000, "batch_size": 4, "sequences_seen": 200000,
        "train_wall_seconds": 3600.0, "machine": "2-core CPU",
        "evaluate_command": "ntm evaluate runs/rc -n 100",
        "evaluation": [{"length": 10, "repeats": 10, "mean_bits": 0.0, "worst_bits": 0,
                        "perfect_fraction": 1.0, "sequences": 100}],
        "quality_bars": [{"point": "10x10", "limit": 0.1, "measured": 0.0, "met": True}],
        "export_proof": [
            {"point": "length 10x10", "time_steps": 112, "max_abs_diff": 5.7e-7,
             "noise_floor": 4.1e-6, "tolerance": 1e-4},
            {"point": "length 20x10", "time_steps": 222, "max_abs_diff": 2.6e-3,
             "noise_floor": 1.2e-2, "tolerance": 4.6e-2}],
    }
    return {**base, **extra}


def test_card_shows_commands_bars_and_every_proof_point():
    text = render_card(card(note="Seed 2 of 2 tried."), "length")
    assert "ntm train --task repeat-copy" in text and "Seed 2 of 2 tried." in text
    assert "| 10x10 | <= 0.1 | 0.000 | yes |" in text
    assert "| length 20x10 | 222 | 2.6e-03 | 1.2e-02 | 4.6e-02 |" in text
    assert "repeats 1-10" in text


def test_cards_made_before_the_proof_table_still_render():
    old = card()
    del old["export_proof"]
    assert "Export proof" in render_card(old, "length")


def test_a_card_of_a_chosen_checkpoint_names_it_in_its_commands():
    from pathlib import Path

    from ntm.export.bundle import export_command

    assert export_command(Path("runs/rc"), "repeat-copy", 58000) == (
        "ntm export runs/rc --checkpoint 58000 --format onnx --stateful "
        "-o ntm/pretrained/repeat-copy.onnx")
    assert "--checkpoint" not in export_command(Path("runs/rc"), "repeat-copy")
