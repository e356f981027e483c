"""End to end: train.py on a small text, the checkpoint alone, python -m src.sample."""

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_modules.char_text import UNK, read_corpus
from src.lightning_modules.char_language_model import CharLanguageModel
from src.sample import main as sample_main
from src.utils.checkpoint_file import MODEL_CLASS_KEY
from tests.common import QUIET, ROOT, run_dir
from train import cli_main


# -- end to end: train.py, checkpoint alone, src.sample -------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("char_lm")
    text = read_corpus(None)[:30000]
    path = tmp / "poems.txt"
    path.write_text(text, encoding="utf-8")
    cli = cli_main(["fit", "--config", str(ROOT / "configs/char_lm.yaml"), "--data.path", str(path),
                    "--data.window_len", "64", "--data.batch_size", "32", "--model.hidden_size", "64",
                    "--model.sample_length", "40", "--trainer.max_epochs", "2",
                    "--trainer.default_root_dir", str(tmp), *QUIET])
    return cli, run_dir(tmp)


@pytest.mark.slow
def test_fit_logs_metrics_baselines_and_samples(trained_run):
    _, run = trained_run
    scalars, texts = {}, set()
    for f in run.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        scalars |= {t: [e.value for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
        texts |= set(acc.Tags()["tensors"])
    need = ["val/loss", "val/bpc", "val/perplexity", "val/baseline_unigram_bpc", "val/baseline_bigram_bpc"]
    assert set(need) <= set(scalars)
    assert len(scalars["val/bpc"]) == 2  # one per epoch, the sanity check not included
    loss, bpc, ppl = scalars["val/loss"][-1], scalars["val/bpc"][-1], scalars["val/perplexity"][-1]
    assert bpc == pytest.approx(loss / math.log(2), rel=1e-4) and ppl == pytest.approx(math.exp(loss), rel=1e-4)
    assert scalars["val/baseline_bigram_bpc"][-1] < scalars["val/baseline_unigram_bpc"][-1]
    assert {"samples/temperature_0.5", "samples/temperature_1", "samples/temperature_1.5"} <= \
        {t.rsplit("/", 1)[0] for t in texts}


@pytest.mark.slow
def test_checkpoint_alone_gives_the_same_samples(trained_run, capsys):
    cli, run = trained_run
    ckpt = run / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)
    assert raw[MODEL_CLASS_KEY] == "CharLanguageModel" and raw["vocabulary"][0] == UNK
    assert all(isinstance(c, str) for c in raw["vocabulary"])
    original = cli.model.cpu().generate("the ", 80, temperature=0.8, seed=3)
    loaded = CharLanguageModel.from_checkpoint(str(ckpt))
    assert loaded.generate("the ", 80, temperature=0.8, seed=3) == original
    sample_main(["--ckpt_path", str(ckpt), "--prime", "the ", "--length", "80", "--temperature", "0.8", "--seed", "3"])
    out = capsys.readouterr().out
    assert out == original + "\n"  # the text and nothing else


@pytest.mark.slow
def test_sample_cli_errors_are_one_line_with_exit_2(trained_run, tmp_path, capsys):
    _, run = trained_run
    ckpt = str(run / "checkpoints" / "last.ckpt")
    with pytest.raises(SystemExit) as stop:
        sample_main(["--ckpt_path", ckpt, "--prime", "a", "--length", "10", "--temperature", "-1"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: --temperature -1.0 must be a finite number >= 0")
    other = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {}, MODEL_CLASS_KEY: "TextClassifier"}, other)
    with pytest.raises(SystemExit) as stop:
        sample_main(["--ckpt_path", str(other)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "holds a TextClassifier, not a CharLanguageModel" in err
    assert "python -m src.predict" in err
