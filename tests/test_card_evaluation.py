"""Model cards measured on many held-out sequences (benchmarks/card_evaluation.py): the
failure rate's upper bound, the card it writes and how the card renders."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ntm.contract.tasks import get_task
from ntm.export.bundle import render_card
from ntm.training.evaluation import failure_upper_bound

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "ntm" / "pretrained"
EVALUATION_FIELDS = {"evaluation", "evaluate_command", "evaluation_method", "quality_bars",
                     "all_bars_met"}


def binomial_at_most(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def test_with_no_failures_the_bound_is_the_exact_one_near_the_rule_of_three():
    for n in (100, 400, 10_000):
        bound = failure_upper_bound(0, n)
        assert bound == pytest.approx(1 - 0.05 ** (1 / n))
        assert bound == pytest.approx(3 / n, rel=0.02)


@pytest.mark.parametrize("failures, sequences", [(1, 400), (3, 400), (12, 1000), (30, 60)])
def test_the_bound_leaves_five_percent_for_as_few_failures(failures, sequences):
    bound = failure_upper_bound(failures, sequences)
    assert failures / sequences < bound < 1
    assert binomial_at_most(failures, sequences, bound) == pytest.approx(0.05, abs=1e-6)


def test_the_bound_grows_with_the_failures_and_is_one_when_all_failed():
    bounds = [failure_upper_bound(k, 400) for k in range(6)]
    assert bounds == sorted(bounds) and len(set(bounds)) == 6
    assert failure_upper_bound(1, 400) == pytest.approx(0.01180, abs=1e-5)  # beta.ppf(.95, 2, 399)
    assert failure_upper_bound(7, 7) == 1.0
    with pytest.raises(ValueError):
        failure_upper_bound(5, 4)


def run_small(out: Path, *options: str) -> tuple[dict, dict, str]:
    """benchmarks/card_evaluation.py copy --small into ``out`` -> (its results JSON, the card
    it wrote there, the card's Markdown)."""
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "card_evaluation.py"),
                          "copy", "--small", "--out", str(out), *options], cwd=out,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return (json.loads((out / "card_evaluation-copy_small.json").read_text()),
            json.loads((out / "copy.json").read_text()), (out / "copy.md").read_text())


def check_small_card(result: dict, card: dict, text: str, engine: str) -> None:
    (model,) = result["models"]
    assert model["engine"] == engine and model["seconds"] >= 0  # 0.0: a quick model, rounded
    assert [r["length"] for r in model["rows"]] == [5, 10]
    for row in model["rows"]:
        assert row["sequences"] == 300 and row["seconds"] >= 0
        assert row["failures"] == len(row["failed"]) == round(300 * (1 - row["perfect_fraction"]))
        assert row["failure_upper_95"] == pytest.approx(
            failure_upper_bound(row["failures"], 300))
    bundled = json.loads((PRETRAINED / "copy.json").read_text())
    assert {k: v for k, v in card.items() if k not in EVALUATION_FIELDS} == \
        {k: v for k, v in bundled.items() if k not in EVALUATION_FIELDS}
    assert [r["sequences"] for r in card["evaluation"]] == [300, 300]
    assert card["evaluation_method"]["engine"] == engine
    assert card["evaluate_command"] == "python benchmarks/card_evaluation.py copy" + \
        ("" if engine == "fused" else f" --engine {engine}") + " --small"
    # bars at points this run did not measure keep their figures
    assert [b["point"] for b in card["quality_bars"]] == \
        [b["point"] for b in bundled["quality_bars"]]
    assert "95% upper" in text and "Clopper-Pearson" in text and f"{engine} engine" in text
    assert "## Export proof" in text and card["note"] in text
    assert result["command"] == card["evaluate_command"]


def test_small_run_on_the_standard_engine_writes_the_card_and_its_rates(tmp_path):
    result, card, text = run_small(tmp_path, "--engine", "standard")
    check_small_card(result, card, text, "standard")


def test_small_run_on_the_fused_engine(tmp_path, kernel_library):
    result, card, text = run_small(tmp_path)
    check_small_card(result, card, text, "fused")


def card_with_rates() -> dict:
    card = json.loads((PRETRAINED / "copy.json").read_text())
    card["evaluation"] = [
        {"length": 20, "repeats": None, "sequences": 10_000, "mean_bits": 0.0079,
         "worst_bits": 79.0, "perfect_fraction": 0.9999, "memory_size": 128, "measures": None,
         "failures": 1, "failure_rate": 1e-4, "failure_upper_95": 4.74e-4}]
    card["evaluation_method"] = {
        "command": "python benchmarks/card_evaluation.py copy", "engine": "fused",
        "file": "copy.fused.onnx", "onnxruntime": "1.32.0", "data_seed": 1234,
        "sequences_per_point": 10_000, "batch_size": 256, "rows": "...",
        "failure_bound": "one-sided 95% upper bound, exact (Clopper-Pearson)", "seconds": 90.0}
    card["evaluate_command"] = "python benchmarks/card_evaluation.py copy"
    card["quality_bars"] = [{"point": "20", "limit": 0.1, "measured": 0.0079, "met": True,
                             "failure_rate": 1e-4, "failure_upper_95": 4.74e-4}]
    return card


def test_a_card_with_failure_rates_shows_them_beside_the_mean():
    text = render_card(card_with_rates(), get_task("copy"))
    table = text.split("## Generalisation")[1].split("```")[1]
    head, row = table.strip().splitlines()
    assert head.split()[-4:] == ["failed", "rate", "95%", "upper"]
    assert row.split() == ["20", "0.008", "79", "100.0%", "10000", "128", "1", "0.010%",
                           "0.047%"]
    assert "10000 fresh sequences per point" in text and "fused engine" in text
    assert "| 20 | <= 0.1 | 0.008 | 0.010% (<= 0.047%) | yes |" in text


def test_update_card_replaces_only_the_evaluation_fields():
    sys.path.insert(0, str(REPO))
    from benchmarks.card_evaluation import update_card
    from ntm.contract.tasks import get_task

    bundled = json.loads((PRETRAINED / "copy.json").read_text())
    row = {"length": 20, "repeats": None, "sequences": 10, "mean_bits": 0.5, "worst_bits": 5.0,
           "perfect_fraction": 0.9, "memory_size": 128, "measures": None, "failures": 1,
           "failure_rate": 0.1, "failure_upper_95": 0.39, "seconds": 1.0, "failed": []}
    card = update_card(bundled, [row], {"command": "c"}, get_task("copy"))
    assert card["evaluation"] == [{k: v for k, v in row.items()
                                   if k not in ("seconds", "failed")}]
    bars = {b["point"]: b for b in card["quality_bars"]}
    assert bars["20"]["measured"] == 0.5 and not bars["20"]["met"]
    assert bars["20"]["failure_upper_95"] == 0.39
    assert bars["500"] == next(b for b in bundled["quality_bars"] if b["point"] == "500")
    assert card["all_bars_met"] is False and card["evaluate_command"] == "c"
    assert {k: v for k, v in card.items() if k not in EVALUATION_FIELDS} == \
        {k: v for k, v in bundled.items() if k not in EVALUATION_FIELDS}


def test_a_task_whose_wrong_bits_are_no_failures_gets_its_measures_not_rates(tmp_path):
    """N-grams: the card's rows carry cost, optimal cost and excess, no failure counts (its
    bits are random), and its Markdown says why it has no bars."""
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "card_evaluation.py"),
                          "ngrams", "--small", "--engine", "standard", "--out", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    card = json.loads((tmp_path / "ngrams.json").read_text())
    for row in card["evaluation"]:
        assert row["sequences"] == 300 and "failures" not in row
        measures = row["measures"]
        assert measures["excess_bits"] == pytest.approx(
            measures["cost_bits"] - measures["optimal_bits"])
        assert 0 < measures["optimal_bits"] <= measures["cost_bits"] + 1  # per point, on average
    text = (tmp_path / "ngrams.md").read_text()
    assert "excess_bits" in text and "None: the bits it predicts are random" in text
    assert "Clopper-Pearson" not in text and "the key strength as trained" in text
    results = (tmp_path / "card_evaluation-ngrams_small.md").read_text()
    assert "| point | rows | n | bits/seq wrong | cost_bits | optimal_bits | excess_bits |" in results


def test_other_rows_are_measured_apart_from_the_card(tmp_path):
    """--memory-size runs every point with those rows and writes its own results file; it
    needs --no-card, since a card measures the rows the model chooses itself."""
    script = [sys.executable, str(REPO / "benchmarks" / "card_evaluation.py"), "ngrams",
              "--small", "--engine", "standard", "--out", str(tmp_path), "--memory-size", "256"]
    refused = subprocess.run(script, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--memory-size" in refused.stderr
    run = subprocess.run([*script, "--no-card"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "card_evaluation-ngrams-rows256_small.json").read_text())
    assert {r["memory_size"] for r in result["models"][0]["rows"]} == {256}
    assert "--memory-size 256 --no-card" in result["command"]
    assert not (tmp_path / "ngrams.json").exists()
