import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@pytest.fixture(scope="session", autouse=True)
def neutral_working_directory():
    """Every test runs from an empty directory: what a user's checkout holds in runs/ and
    exports/ (which ``ntm serve``, ``ntm.load`` and ``ntm export`` look in by default) never
    reaches a test. Tests name the repository's files by absolute path."""
    before = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="ntm-tests-cwd-") as where:
        os.chdir(where)
        try:
            yield Path(where)
        finally:
            os.chdir(before)


@pytest.fixture(scope="session")
def kernel_library() -> Path:
    """The built fused kernel (``ntm build-kernel``; .ci/run builds it). Without it the tests
    that need it skip, saying so, except under ``CI=true``, where they fail."""
    from ntm.contract.kernel_library import find_library

    found = find_library()
    if found is None:
        reason = "the fused kernel is not built (run `ntm build-kernel`)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def baseline_run(tmp_path_factory) -> Path:
    """A run of the paper's LSTM baseline on copy (lengths 1-4, two layers of 12 units, 20
    steps): tiny, to export and serve. Needs the [train] extra."""
    pytest.importorskip("tensorflow")
    from ntm.training.config import train_config_for
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("baseline") / "copy-lstm"
    config = train_config_for("lstm", task="copy", max_length=4, batch_size=4, steps=20,
                              eval_every=10, eval_size=8, checkpoint_every=10, log_every=10,
                              target_error=-1)
    Trainer(Run.create(run_dir, config, architecture="lstm", lstm_layers=2,
                       lstm_units=12)).run()
    return run_dir


@pytest.fixture(scope="session")
def learned_memory_run(tmp_path_factory) -> Path:
    """A tiny NTM on copy (lengths 1-4, memory 16 x 6) whose initial memory is learned, 20
    steps: its rows differ from the first step, so an engine that started from a constant
    memory would answer otherwise. Needs the [train] extra."""
    pytest.importorskip("tensorflow")
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("learned-memory") / "copy"
    config = TrainConfig(task="copy", max_length=4, batch_size=4, steps=20, eval_every=10,
                         eval_size=8, checkpoint_every=10, log_every=10, target_error=-1)
    Trainer(Run.create(run_dir, config, memory_size=16, memory_width=6, controller_size=16,
                       initial_memory="learned")).run()
    return run_dir


@pytest.fixture
def counting_ngrams():
    """N-grams for a model that keeps a pair of counts per context (the paper's Figure 15), as a
    plug-in task would define it: its rows never grow, however long the sequence."""
    from ntm.contract.tasks.ngrams import NGramsTask

    class CountingNGrams(NGramsTask):
        def memory_rows(self, difficulty):
            return 2 ** self.context_bits + 1

        def memory_rows_for_time_steps(self, time_steps):
            return 2 ** self.context_bits + 1

    return CountingNGrams()
