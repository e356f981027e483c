import numpy as np
import pytest
import torch

from tests.common import QUIET, ROOT
from train import cli_main


def write_glove(path, words, dim):
    rng = np.random.default_rng(0)
    lines = [w + " " + " ".join(f"{x:.5f}" for x in rng.normal(size=dim)) for w in words]
    path.write_text("\n".join(lines) + "\n")
    return {w: np.array(line.split()[1:], dtype=np.float32) for w, line in zip(words, lines)}


@pytest.mark.slow
def test_embedding_rows_start_from_the_glove_vectors(tmp_path):
    vectors = write_glove(tmp_path / "g.txt", ["movie", "terrible", "amazing", "notinthedata"], 8)
    cli = cli_main(["fit", "--config", str(ROOT / "configs/reviews.yaml"), "--model.embedding_dim", "8",
                    "--model.glove_path", str(tmp_path / "g.txt"), "--trainer.max_epochs", "1",
                    "--trainer.limit_train_batches", "0", "--data.n_samples", "100",
                    "--trainer.default_root_dir", str(tmp_path / "run"), "--data.cache_dir", str(tmp_path / "c"),
                    *QUIET])
    model = cli.model
    row = model.vocabulary.index["terrible"]
    torch.testing.assert_close(model.net.embedding.weight[row].detach(), torch.from_numpy(vectors["terrible"]))


def test_a_glove_dimension_that_differs_from_embedding_dim_is_one_clear_line(tmp_path, capsys):
    write_glove(tmp_path / "g.txt", ["movie"], 5)
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", "--config", str(ROOT / "configs/reviews.yaml"), "--model.glove_path", str(tmp_path / "g.txt"),
                  "--data.n_samples", "60", "--trainer.default_root_dir", str(tmp_path / "run"),
                  "--data.cache_dir", str(tmp_path / "c"), *QUIET])
    assert stop.value.code == 2
    assert "5-d vectors but embedding_dim=64; set --model.embedding_dim 5" in capsys.readouterr().err


def test_keep_gate_bias_is_for_gated_cells_only():
    from src.lightning_modules.text_classifier import TextClassifier
    from src.utils.errors import UserInputError

    assert TextClassifier(vocab_size=20, cell="gru", keep_gate_bias=1.0).hparams.keep_gate_bias == 1.0
    with pytest.raises(UserInputError, match="keep_gate_bias=1.0 applies to --model.cell lstm or gru, not rnn"):
        TextClassifier(vocab_size=20, cell="rnn", keep_gate_bias=1.0)
