"""Fixtures of the fault-injection tests (tests/faults/, marker ``faults``): checkpoints to break and refuse."""

from pathlib import Path

import pytest

from tests.common import run_dir
from tests.faults.fault_harness import TINY, checkpoint_of


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The run folder of one epoch of the tiny default run (trained once per session)."""
    from train import cli_main

    root = tmp_path_factory.mktemp("tiny_run")
    cli_main(["fit", *TINY, "--trainer.default_root_dir", str(root), "--data.cache_dir", str(root / "cache")])
    return run_dir(root)


@pytest.fixture(scope="session")
def classifier_ckpt(tiny_run) -> Path:
    return tiny_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def char_lm_ckpt(tmp_path_factory) -> Path:
    from src.lightning_modules.char_language_model import CharLanguageModel

    model = CharLanguageModel(vocab_size=5, embedding_dim=4, hidden_size=4)
    return checkpoint_of(model, tmp_path_factory.mktemp("char_lm") / "char_lm.ckpt",
                         vocabulary=["<unk>", "a", "b", " ", "c"], lowercase=False)


@pytest.fixture(scope="session")
def autoencoder_ckpt(tmp_path_factory) -> Path:
    import torch

    from src.lightning_modules.curriculum_autoencoder import CurriculumAutoencoder

    model = CurriculumAutoencoder(input_dim=3, hidden_size=4, bottleneck_dim=2, projector=False)
    vectors = torch.tensor([[0.0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    return checkpoint_of(model, tmp_path_factory.mktemp("autoencoder") / "ae.ckpt",
                         vocabulary=["<pad>", "<unk>", "red", "rose", "night"], vocab_vectors=vectors,
                         mean_vector=vectors[2:].mean(0), glove_path=None, glove_dim=None,
                         tokenizer={"max_len": 50, "oov": "drop"}, data_report={})
