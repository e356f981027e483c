"""The fast paths the IMDB throughput bench relies on compute what the reference's packed pipeline computes.

Ours runs the LSTM on the padded, length-bucketed batch and gathers each review's last valid output (or pools
over valid positions); the reference packs. These tests pin that the two agree in value and in gradient,
that nothing after a review's length (padding or garbage) can change its logit, also for the reverse direction
of a bidirectional model and under bf16 autocast, and that the bench's two pipelines see the same data.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import lightning_overhead  # noqa: E402
from imdb_throughput import ReferenceLSTM, ReviewDataset, accuracy, as_lists, load_config, main, reference_collate  # noqa: E402

from data_modules.batching import BucketBatchSampler, EncodedTexts, pad_collate  # noqa: E402
from src.models.rnn_classifier import RNNClassifier  # noqa: E402
from tests.common import ROOT


def corpus(n=12, vocab=40, seed=0):
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(2, vocab, rng.integers(1, 15)).tolist() for _ in range(n)]
    return EncodedTexts.from_sequences(sequences, rng.integers(0, 2, n).astype(float))


def ours_from_reference(reference: ReferenceLSTM, pooling="last") -> RNNClassifier:
    """Our network with the reference's weights (same embedding, LSTM and output layer)."""
    vocab, embedding_dim = reference.embedding.weight.shape
    ours = RNNClassifier(vocab, embedding_dim, reference.lstm.hidden_size, pooling=pooling)
    ours.embedding.load_state_dict(reference.embedding.state_dict())
    ours.rnn.layers[0].load_state_dict(reference.lstm.state_dict())
    ours.head.load_state_dict(reference.fc.state_dict())
    return ours


def test_padded_last_valid_equals_packed_reference_in_value_and_gradient():
    torch.manual_seed(0)
    reference = ReferenceLSTM(40, 8, 6, dropout=0.0)
    ours = ours_from_reference(reference)
    data = corpus()
    dataset = ReviewDataset(*as_lists(data))
    tokens, labels, lengths = reference_collate([dataset[i] for i in range(len(dataset))], pad_index=0)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    ref_logits = reference(tokens, lengths)
    our_logits = ours(tokens, torch.tensor(lengths)).logits
    torch.testing.assert_close(our_logits, ref_logits, atol=1e-6, rtol=1e-5)
    loss_fn(ref_logits, labels).backward()
    loss_fn(our_logits, labels).backward()
    # Padding contributes no gradient on the padded path: every parameter's gradient is the packed one.
    for (name, theirs), mine in zip(reference.lstm.named_parameters(), ours.rnn.layers[0].parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-6, rtol=1e-5, msg=name)
    torch.testing.assert_close(ours.embedding.weight.grad, reference.embedding.weight.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_tokens_after_a_reviews_length_never_change_its_logit(pooling, bidirectional):
    """Garbage (not only pad ids) after each length: a reverse direction that read padding first would see it."""
    torch.manual_seed(1)
    model = RNNClassifier(40, 8, 6, bidirectional=bidirectional, pooling=pooling).eval()
    batch = pad_collate([corpus()[i] for i in range(12)])
    garbage = batch.tokens.clone()
    padding = torch.arange(garbage.size(1))[None, :] >= batch.lengths[:, None]
    garbage[padding] = torch.randint(2, 40, (int(padding.sum()),))
    clean = model(batch.tokens, batch.lengths).logits
    torch.testing.assert_close(model(garbage, batch.lengths).logits, clean)
    alone = torch.stack([model(batch.tokens[i:i + 1, :n], batch.lengths[i:i + 1]).logits[0]
                         for i, n in enumerate(batch.lengths.tolist())])
    torch.testing.assert_close(alone, clean, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_keeps_padding_invariance_and_stays_close_to_fp32():
    torch.manual_seed(2)
    model = RNNClassifier(40, 16, 16, bidirectional=True, pooling="mean").eval()
    batch = pad_collate([corpus(seed=3)[i] for i in range(12)])
    longer = torch.nn.functional.pad(batch.tokens, (0, 7), value=0)  # more padding: a different T
    with torch.autocast("cpu", dtype=torch.bfloat16):
        short = model(batch.tokens, batch.lengths).logits.float()
        long = model(longer, batch.lengths).logits.float()
    torch.testing.assert_close(short, long)
    torch.testing.assert_close(short, model(batch.tokens, batch.lengths).logits, atol=0.05, rtol=0.05)


def test_bucketed_batches_cover_each_review_once_with_less_padding_than_shuffled_ones():
    data = corpus(n=400, seed=4)
    sampler = BucketBatchSampler(torch.utils.data.RandomSampler(data), 16, False, data.lengths, bucket_batches=50)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(400))
    bucketed = sum(len(b) * data.lengths[b].max() for b in batches)
    order = np.random.default_rng(0).permutation(400)
    shuffled = sum(16 * data.lengths[order[i:i + 16]].max() for i in range(0, 400, 16))
    assert bucketed < 0.8 * shuffled


def test_both_pipelines_get_the_same_reviews_and_one_scorer():
    data = corpus(n=30, seed=5)
    sequences, labels = as_lists(data)
    assert [len(s) for s in sequences] == data.lengths.tolist() and labels == data.labels.tolist()
    tokens, _, lengths = reference_collate([ReviewDataset(sequences, labels)[i] for i in range(30)])
    ours = pad_collate([data[i] for i in range(30)])
    assert torch.equal(tokens, ours.tokens) and lengths == ours.lengths.tolist()
    # The scorer: a perfect predictor scores 1, an always-negative one scores the share of negatives.
    lookup = {tuple(s): 2 * lab - 1 for s, lab in zip(sequences, labels)}

    def oracle(t, n):
        return torch.tensor([lookup[tuple(row[:k].tolist())] for row, k in zip(t, n.tolist())], dtype=torch.float)

    assert accuracy(oracle, data, torch.device("cpu"), batch_size=7) == 1.0
    share = float((data.labels == 0).mean())
    assert accuracy(lambda t, n: -torch.ones(len(n)), data, torch.device("cpu")) == pytest.approx(share)


def test_fast_config_maps_onto_the_classifier():
    settings = load_config(ROOT / "configs" / "imdb_fast.yaml")
    assert settings["model"]["cell"] == "lstm" and settings["model"]["hidden_size"] == 128
    assert settings["model"]["optimizer"].func is torch.optim.Adam and settings["model"]["optimizer"].keywords["lr"] > 0
    assert settings["trainer"]["gradient_clip_val"] == 5.0


def tiny_reviews(tmp_path) -> Path:
    rng = np.random.default_rng(6)
    words = np.array(["good", "great", "bad", "awful", "plot", "film", "the", "a", "actor", "scene"])
    labels = rng.integers(0, 2, 240)
    texts = [" ".join(rng.choice(words[[0, 1] if y else [2, 3]], 2).tolist() + rng.choice(words[4:], 8).tolist())
             for y in labels]
    path = tmp_path / "reviews.parquet"
    pd.DataFrame({"text": texts, "label": labels}).to_parquet(path)
    return path


@pytest.mark.slow
def test_bench_prints_the_ratio_line_last(tmp_path, capsys):
    path = tiny_reviews(tmp_path)
    threads = torch.get_num_threads()
    try:  # --quick sets one thread for the process
        main(["--data", str(path), "--quick", "--limit", "150", "--eval_limit", "60", "--max_len", "12",
              "--cache_dir", str(tmp_path / "cache")])
    finally:
        torch.set_num_threads(threads)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(f.split("=") for f in last.split())
    assert list(fields) == ["ratio_samples_per_s", "acc_ours", "acc_ref"]
    assert float(fields["ratio_samples_per_s"]) > 0 and 0.0 <= float(fields["acc_ours"]) <= 1.0


def test_bench_names_a_missing_config_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path), "--config", str(tmp_path / "nope.yaml")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: config not found")


@pytest.mark.slow
def test_lightning_overhead_bench_pairs_plain_and_lightning_epochs(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        lightning_overhead.main(["--data", str(tiny_reviews(tmp_path)), "--limit", "150", "--max_len", "12",
                                 "--repeats", "2", "--cache_dir", str(tmp_path / "cache")])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.strip().splitlines()
    assert len([line for line in out if line.startswith("repeat ")]) == 2
    assert out[-1].startswith("overhead_pct_per_epoch=") and float(out[-1].split()[1].split("=")[1]) > 0
