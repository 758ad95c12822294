"""The model card a bundled model ships with (rendering only; bundling itself needs a run)."""

from ntm.contract.tasks import get_task
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
    text = render_card(card(note="Seed 2 of 2 tried."), get_task("repeat-copy"))
    assert "ntm train --task repeat-copy" in text and "Seed 2 of 2 tried." in text
    assert "| 10x10 | <= 0.1 | 0.000 | yes |" in text
    assert "| length 20x10 | 222 | 2.6e-03 | 1.2e-02 | 4.6e-02 |" in text
    assert "repeats 1-10" in text


def test_cards_made_before_the_proof_table_still_render():
    old = card()
    del old["export_proof"]
    assert "Export proof" in render_card(old, get_task("repeat-copy"))


def test_a_card_of_a_chosen_checkpoint_names_it_in_its_commands():
    from pathlib import Path

    from ntm.export.bundle import export_command

    assert export_command(Path("runs/rc"), "repeat-copy", 58000) == (
        "ntm export runs/rc --checkpoint 58000 --format onnx --stateful "
        "-o ntm/pretrained/repeat-copy.onnx")
    assert "--checkpoint" not in export_command(Path("runs/rc"), "repeat-copy")


def test_a_card_says_whether_the_memory_grows_and_counts_its_heads(counting_ngrams):
    grows = render_card(card(), get_task("repeat-copy"))
    assert "Its memory grows with the" in grows and "1 read head / 1 write head" in grows
    assert "the key strength scaled by\n(log N / log 128)^2" in grows
    ngrams = card(name="ngrams", task="ngrams", train_lengths=[200, 200], train_repeats=None,
                  quality_bars=[],
                  model={**card()["model"], "controller": "feedforward", "num_read_heads": 8,
                         "num_write_heads": 8},
                  evaluation=[{"length": 200, "repeats": None, "mean_bits": 40.1,
                               "worst_bits": 70, "perfect_fraction": 0.0, "sequences": 100,
                               "measures": {"cost_bits": 128.0, "optimal_bits": 126.0,
                                            "excess_bits": 2.0}}])
    text = render_card(ngrams, counting_ngrams)
    assert "keeps the 128 rows it was trained with" in text and "grows" not in text
    assert "8 read heads / 8 write heads" in text and "task, bits 200." in text
    assert "learned at start" not in text
    ngrams["model"]["initial_memory"] = "learned"
    assert "memory 128 x 20 learned at start," in render_card(ngrams, counting_ngrams)
    ngrams["model"]["initial_memory"] = "constant"
    ngrams["model"]["grow_strength_power"] = 0.0  # the built-in task's rule
    grows = render_card(ngrams, get_task("ngrams"))
    assert "Its memory grows with the" in grows and "the key strength as trained" in grows
    assert "excess_bits" in text and "None: the bits it predicts are random" in text
