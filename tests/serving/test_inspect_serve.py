"""Word importance (Integrated Gradients, occlusion), ONNX export + ONNX Runtime serving, int8 quantization."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data_modules.batching import pad_collate
from data_modules.reviews import synthetic_reviews
from data_modules.vocabulary import Vocabulary, tokenize
from src import explain as explain_cli
from src import export as export_cli
from src import predict as predict_cli
from src.models.rnn_classifier import RNNClassifier
from src.serving.int8 import load_int8, quantize_onnx
from src.serving.onnx_classifier import OnnxClassifier, onnx_session
from src.serving.onnx_export import example_batch, export_onnx, max_logit_difference
from src.serving.pytorch_classifier import PyTorchClassifier
from src.serving.word_importance import explain, integrated_gradients, occlusion
from src.utils.errors import UserInputError
from tests.common import ROOT, run_dir
from train import cli_main

SMALL = ["--data.n_samples", "300", "--data.max_len", "30", "--model.embedding_dim", "16", "--model.hidden_size", "16",
         "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu"]
TEXT = "the acting was brilliant but the plot was terrible and boring"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny LSTM trained by train.py on the synthetic reviews (max_len 30)."""
    tmp = tmp_path_factory.mktemp("trained")
    cli_main(["fit", "--config", str(ROOT / "configs/reviews.yaml"), "--trainer.default_root_dir", str(tmp),
              "--data.cache_dir", str(tmp / "cache"), *SMALL])
    return run_dir(tmp) / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def trained(ckpt) -> PyTorchClassifier:
    return PyTorchClassifier.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export_cli.main(["--ckpt_path", str(ckpt), "--output", str(out), "--quantize"])
    return out


def random_classifier(**kwargs) -> PyTorchClassifier:
    """An untrained classifier with a 30-word vocabulary (IG and export are exact whatever the weights)."""
    torch.manual_seed(0)
    net = RNNClassifier(vocab_size=30, embedding_dim=8, hidden_size=8, **kwargs).eval()
    return PyTorchClassifier(net, Vocabulary(["<pad>", "<unk>", *(f"w{i}" for i in range(28))]),
                             ["negative", "positive"], 50)


MODELS = {"trained lstm": None, "bidirectional gru": dict(cell="gru", bidirectional=True, num_layers=2),
          "rnn, mean pooling": dict(cell="rnn", pooling="mean")}


@pytest.fixture(params=list(MODELS))
def any_model(request, trained) -> PyTorchClassifier:
    kwargs = MODELS[request.param]
    return trained if kwargs is None else random_classifier(**kwargs)


def mixed_batch(classifier, lengths=(9, 2, 6)):
    return example_batch(len(classifier.vocabulary), classifier.pad_index, lengths=lengths, seed=2)


# -- Integrated Gradients and occlusion ------------------------------------------------------------------
def test_integrated_gradients_completeness(any_model):
    tokens, lengths = mixed_batch(any_model)
    attributions, delta = integrated_gradients(any_model, tokens, lengths, n_steps=64)
    with torch.no_grad():
        p = torch.sigmoid(any_model.net(tokens, lengths).logits)
        p_baseline = torch.sigmoid(any_model.net(torch.zeros_like(tokens), lengths).logits)
    gap = attributions.sum(1) - (p - p_baseline)
    # Our own completeness gap is the one Captum reports, and it is small.
    assert torch.allclose(gap, delta.float(), atol=1e-5)
    assert gap.abs().max() < 0.01 * max(1.0, (p - p_baseline).abs().max().item()) + 1e-3


def test_padding_gets_zero_attribution(any_model):
    tokens, lengths = mixed_batch(any_model)
    attributions, _ = integrated_gradients(any_model, tokens, lengths, n_steps=16)
    padded = torch.arange(tokens.size(1))[None, :] >= lengths[:, None]
    assert padded.any() and (attributions[padded] == 0).all()
    assert (attributions[~padded] != 0).sum() >= lengths.sum() - 1


def test_occlusion_of_a_token_not_in_the_text_changes_nothing(trained):
    ids = trained.encode_texts([TEXT])[0]
    absent = trained.vocabulary.index["excellent"]
    assert absent not in ids
    groups = [[i] for i in range(len(ids))] + [[i for i, t in enumerate(ids) if t == absent]]
    scores = occlusion(trained, ids, groups)  # one padded batch: the full text plus shorter variants
    assert scores[-1] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():  # and a dropped word's score is the same as computing both texts alone
        alone = [torch.sigmoid(trained.net(torch.tensor([s]), torch.tensor([len(s)])).logits).item()
                 for s in (ids, ids[1:])]
    assert scores[0] == pytest.approx(alone[0] - alone[1], abs=1e-6)
    assert max(abs(s) for s in scores[:-1]) > 1e-4


def test_explain_returns_both_scores_per_token(any_model):
    text = "w3 w5 w7 zzz w9" if len(any_model.vocabulary) == 30 else TEXT
    e = explain(any_model, text, n_steps=16)
    assert e.tokens == tokenize(text)
    assert len(e.integrated_gradients) == len(e.occlusion) == len(e.tokens)
    assert 0.0 <= e.probability <= 1.0 and e.label in e.label_names
    if len(any_model.vocabulary) == 30:
        assert e.known == [True, True, True, False, True]


def test_empty_text_is_refused_without_attribution(trained):
    with pytest.raises(UserInputError, match="no words to explain"):
        explain(trained, "  ... !!! ")


def test_long_text_is_truncated_and_said_once(trained):
    with pytest.warns(UserWarning, match="reads only the first 30") as notes:
        e = explain(trained, " ".join(["boring"] * 45), n_steps=8)
    assert len([n for n in notes if "reads only" in str(n.message)]) == 1
    assert len(e.tokens) == 30 and e.truncated == 15


def test_explain_cli_prints_top_tokens_and_writes_a_page_with_every_token(ckpt, tmp_path, capsys):
    page = tmp_path / "page.html"
    explain_cli.main(["--ckpt_path", str(ckpt), "--text", TEXT, "--output", str(page), "--steps", "16"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and all(len(line.split("\t")) == 3 for line in lines)
    assert {line.split("\t")[0] for line in lines} <= set(tokenize(TEXT))
    html = page.read_text(encoding="utf-8")
    for token in tokenize(TEXT):
        assert f">{token}</span>" in html
    assert "<script" not in html and "http" not in html  # self-contained


# -- ONNX and int8 ---------------------------------------------------------------------------------------
def test_onnx_logits_equal_pytorch_on_mixed_lengths(trained, exported):
    texts, _ = synthetic_reviews(64, seed=7)
    texts = [t * (1 + i % 3) for i, t in enumerate(texts)]  # lengths from ~8 to 30 (max_len) tokens
    batch = pad_collate([(ids, 0.0) for ids in trained.encode_texts(texts)], trained.pad_index)
    assert len(set(batch.lengths.tolist())) > 5
    assert max_logit_difference(trained.net, exported / "model.onnx", batch.tokens, batch.lengths) <= 1e-4
    served = OnnxClassifier(str(exported / "model.onnx")).predict_texts(texts + ["", "zzqx"], batch_size=16)
    expected = trained.predict_texts(texts + ["", "zzqx"], batch_size=16)
    assert [p.label for p in served] == [p.label for p in expected]
    assert np.allclose([p.probability for p in served], [p.probability for p in expected], atol=1e-5)


def test_bidirectional_two_layer_tanh_rnn_exports_exactly(tmp_path):
    # One export covers the reverse direction, the layer-to-layer path and the tanh RNN's GRU twin.
    net = random_classifier(cell="rnn", bidirectional=True, num_layers=2, pooling="last").net
    export_onnx(net, tmp_path / "model.onnx")  # traced on lengths (7, 3, 5); checked on others
    tokens, lengths = example_batch(30, 0, lengths=(12, 1, 5, 9, 2), seed=3)
    assert max_logit_difference(net, tmp_path / "model.onnx", tokens, lengths) <= 1e-4


def test_relu_rnn_export_is_refused(tmp_path):
    with pytest.raises(UserInputError, match="nonlinearity=relu"):
        export_onnx(random_classifier(cell="rnn", nonlinearity="relu").net, tmp_path / "model.onnx")


def test_int8_model_agrees_with_fp32(trained, exported):
    raw = torch.load(exported / "model_int8.pt", weights_only=True)
    assert raw["int8_layers"]["rnn.layers.0"]["weight_ih_l0"].dtype == torch.qint8
    int8 = load_int8(exported / "model_int8.pt")
    assert isinstance(int8.net.rnn.layers[0], torch.ao.nn.quantized.dynamic.LSTM)
    texts, _ = synthetic_reviews(300, seed=11)
    fp32, q = trained.predict_texts(texts), int8.predict_texts(texts)
    agreement = np.mean([a.label == b.label for a, b in zip(fp32, q)])
    assert agreement >= 0.98
    assert np.abs(np.array([p.probability for p in fp32]) - [p.probability for p in q]).max() < 0.1


def test_int8_onnx_agrees_with_fp32_and_serves_through_predict(trained, exported, tmp_path):
    texts, _ = synthetic_reviews(300, seed=11)
    fp32 = trained.predict_texts(texts)
    served = OnnxClassifier(str(exported / "model_int8.onnx")).predict_texts(texts)  # the same vocab.json
    assert np.mean([a.label == b.label for a, b in zip(fp32, served)]) >= 0.98
    assert np.abs(np.array([p.probability for p in fp32]) - [p.probability for p in served]).max() < 0.1
    (tmp_path / "in.txt").write_text("\n".join(texts[:5]) + "\n", encoding="utf-8")
    predict_cli.main(["--ckpt_path", str(exported / "model_int8.onnx"), "--input", str(tmp_path / "in.txt"),
                      "--output", str(tmp_path / "p.csv")])
    assert len((tmp_path / "p.csv").read_text(encoding="utf-8").strip().splitlines()) == 6  # header + 5


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_int8_onnx_of_bidirectional_stacks(cell, tmp_path):
    net = random_classifier(cell=cell, bidirectional=True, num_layers=2).net
    quantize_onnx(export_onnx(net, tmp_path / "model.onnx"), tmp_path / "model_int8.onnx")
    tokens, lengths = example_batch(30, 0, lengths=(12, 1, 5, 9, 2), seed=3)
    feed = {"tokens": tokens.numpy(), "lengths": lengths.numpy()}
    fp32 = onnx_session(tmp_path / "model.onnx").run(None, feed)[0]
    int8 = onnx_session(tmp_path / "model_int8.onnx").run(None, feed)[0]
    assert np.abs(int8 - fp32).max() < 0.05 * max(1.0, np.abs(fp32).max())


# -- bad input -------------------------------------------------------------------------------------------
def test_onnx_without_its_vocabulary_is_refused(exported, tmp_path, capsys):
    alone = tmp_path / "model.onnx"
    shutil.copy(exported / "model.onnx", alone)
    with pytest.raises(UserInputError, match="no vocab.json beside"):
        OnnxClassifier(str(alone))
    (tmp_path / "in.txt").write_text("great film\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        predict_cli.main(["--ckpt_path", str(alone), "--input", str(tmp_path / "in.txt"),
                          "--output", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.startswith("error: no vocab.json") and len(err.splitlines()) == 1


@pytest.mark.parametrize("tool", ["explain", "export"])
def test_checkpoint_of_another_model_class_is_refused(tool, tmp_path, capsys):
    foreign = tmp_path / "lm.ckpt"
    torch.save({"state_dict": {}, "model_class": "CharLanguageModel"}, foreign)
    argv = ["--ckpt_path", str(foreign), "--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stop:
        if tool == "explain":
            explain_cli.main(argv + ["--text", TEXT])
        else:
            export_cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error:") and "CharLanguageModel" in err and "src.sample" in err
