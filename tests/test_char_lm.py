"""Character language model: windows and split, bpc arithmetic, baselines, overfitting, sampling, checkpoints,
bad input, and one end-to-end run of train.py + src.sample on a small text (CPU, seconds)."""

import gzip
import json
import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_modules.char_text import DEFAULT_PATH, UNK, CharTextDataModule, read_corpus, split_blocks
from src.lightning_modules.char_language_model import CharLanguageModel
from src.models.char_rnn import CharRNN, add_one_log_probs, bits_per_char
from src.models.recurrent_trace import is_traceable
from src.sample import main as sample_main
from src.utils.checkpoint_file import MODEL_CLASS_KEY
from src.utils.errors import UserInputError
from train import cli_main

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: intra-op threads only add overhead, and on a shared 2-core box they spin-wait
    against other processes (measured here: 0.57 s per step with 2 threads, 0.025 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write(tmp_path, text: str, name: str = "text.txt") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def random_text(n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz ,.\n", seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def decode(dm: CharTextDataModule, ids) -> str:
    return "".join(dm.vocabulary[i] for i in ids.tolist())


# -- windows and split ----------------------------------------------------------------------------------
def test_every_target_is_the_next_character_and_no_window_crosses_the_split(tmp_path):
    text = random_text(3000)
    dm = CharTextDataModule(write(tmp_path, text), seq_len=9, stride=4, num_blocks=7, val_fraction=0.3, seed=3)
    dm.load()
    train, val = dm.segments["train"], dm.segments["val"]
    bounds = sorted(train + val)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # the parts tile the text, no overlap
    for split, segments in dm.segments.items():
        data = dm.datasets[split]
        assert len(data) > 0
        for i in range(len(data)):
            window = data[i]
            assert window.inputs.shape == window.targets.shape == (9,)
            assert torch.equal(window.targets[:-1], window.inputs[1:])  # shifted by one inside the window
            chars = decode(dm, window.inputs) + decode(dm, window.targets[-1:])
            starts = [m for m in range(len(text) - 9) if text.startswith(chars, m)]
            assert len(starts) == 1  # a random 10-char string occurs once
            start = starts[0]
            assert any(s <= start and start + 10 <= e for s, e in segments), f"{split} window {i} crosses a border"
    # training windows start every `stride` characters, validation windows every seq_len (each char scored once)
    expected_val = sum(len(range(0, e - s - 9, 9)) for s, e in val)
    assert len(dm.datasets["val"]) == expected_val
    assert len(dm.datasets["train"]) == sum(len(range(0, e - s - 9, 4)) for s, e in train)


def test_batches_are_gathered_whole_and_seeded(tmp_path):
    path = write(tmp_path, random_text(2000))
    orders = []
    for _ in range(2):
        dm = CharTextDataModule(path, seq_len=16, batch_size=8, seed=5)
        batch = next(iter(dm.train_dataloader()))
        assert batch.inputs.shape == batch.targets.shape == (8, 16) and batch.inputs.dtype == torch.int64
        orders.append(batch.inputs)
    assert torch.equal(*orders)


def test_vocabulary_is_fitted_on_the_training_part_only(tmp_path):
    n, seq_len = 4000, 20
    train, val = split_blocks(n, seq_len, 0.25, 8, seed=1)
    chars = list(random_text(n))
    s, e = val[0]
    for i in range(s, e, 50):
        chars[i] = "Z"  # only inside validation
    dm = CharTextDataModule(write(tmp_path, "".join(chars)), seq_len=seq_len, num_blocks=8, val_fraction=0.25, seed=1)
    dm.load()
    assert dm.segments == {"train": train, "val": val}
    assert dm.vocabulary[0] == UNK and "Z" not in dm.vocabulary and "a" in dm.vocabulary
    val_ids = dm.datasets["val"].ids
    assert int((val_ids == 0).sum()) == len(range(s, e, 50))  # every Z read as <unk>, nothing else
    assert int((dm.datasets["train"].ids == 0).sum()) == 0


def test_lowercase_option(tmp_path):
    dm = CharTextDataModule(write(tmp_path, "Hello World " * 50), seq_len=8, lowercase=True)
    dm.load()
    assert "H" not in dm.vocabulary and "h" in dm.vocabulary


# -- sources --------------------------------------------------------------------------------------------
def test_reads_a_folder_of_txt_files_and_gzipped_json_lines(tmp_path):
    folder = tmp_path / "books"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second", encoding="utf-8")
    (folder / "a.txt").write_text("first", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("third", encoding="utf-8")
    (folder / "skip.md").write_text("not text", encoding="utf-8")
    assert read_corpus(folder) == "first\n\nsecond\n\nthird"
    rows = [{"title": "t", "text": "roses are red"}, {"title": "u", "text": "violets"}]
    path = tmp_path / "poems.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    assert read_corpus(path) == "roses are red\n\nviolets"
    with pytest.raises(UserInputError, match="no 'body' field.*--data.text_field"):
        read_corpus(path, field="body")


def test_the_embedded_default_is_in_the_repository():
    assert DEFAULT_PATH.is_file() and DEFAULT_PATH.relative_to(ROOT)
    assert len(read_corpus(None)) > 1_000_000  # used when --data.path is not given


# -- bad input ------------------------------------------------------------------------------------------
def test_empty_file(tmp_path):
    with pytest.raises(UserInputError, match="empty"):
        CharTextDataModule(write(tmp_path, "")).load()


def test_a_file_that_is_not_utf8_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\ncaf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(UserInputError, match=r"latin1\.txt is not UTF-8: invalid byte 0xe9 at line 2, column 4"):
        CharTextDataModule(str(path)).load()


def test_a_text_shorter_than_a_window_says_how_long_it_must_be(tmp_path):
    with pytest.raises(UserInputError, match=r"has 100 characters; with seq_len=64 it needs at least 130"):
        CharTextDataModule(write(tmp_path, "x" * 100), seq_len=64).load()


def test_train_py_turns_bad_data_into_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", "--config", str(ROOT / "configs/char_lm.yaml"), "--data.path", write(tmp_path, ""), *QUIET])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # earlier lines may be warnings (LightningCLI's, under pytest)
    assert stop.value.code == 2 and last.startswith("error: ") and "is empty" in last and "Traceback" not in err


# -- arithmetic -----------------------------------------------------------------------------------------
def test_bpc_is_the_cross_entropy_in_nats_over_ln2_on_a_hand_computed_case():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # [B=1, T=2, V=2]
    targets = torch.tensor([[0, 0]])
    # position 1: p = 1/2 -> 1 bit; position 2: p = 3/4 -> log2(4/3) bits
    expected = (1.0 + math.log2(4 / 3)) / 2
    assert bits_per_char(logits, targets).item() == pytest.approx(expected, abs=1e-6)
    nats = F.cross_entropy(logits.view(-1, 2), targets.view(-1)).item()
    assert bits_per_char(logits, targets).item() == pytest.approx(nats / math.log(2), abs=1e-6)


def test_add_one_baselines_on_a_tiny_known_text():
    # vocabulary [<unk>, a, b]; training text "abab": unigram counts a=2, b=2; bigrams a->b twice, b->a once
    unigram = add_one_log_probs(torch.tensor([0, 2, 2])).exp()
    assert unigram.tolist() == pytest.approx([1 / 7, 3 / 7, 3 / 7])
    bigram = add_one_log_probs(torch.tensor([[0, 0, 0], [0, 0, 2], [0, 1, 0]]))
    assert bigram.exp()[1].tolist() == pytest.approx([1 / 5, 1 / 5, 3 / 5])
    assert bigram.exp()[2].tolist() == pytest.approx([1 / 4, 2 / 4, 1 / 4])
    # validation "aba": predict b after a, then a after b
    inputs, targets = torch.tensor([[1, 2]]), torch.tensor([[2, 1]])
    expected = (-math.log2(3 / 5) - math.log2(2 / 4)) / 2
    assert bits_per_char(bigram[inputs], targets).item() == pytest.approx(expected, abs=1e-6)
    assert bits_per_char(add_one_log_probs(torch.tensor([0, 2, 2])).expand(1, 2, 3), targets).item() == \
        pytest.approx(-math.log2(3 / 7), abs=1e-6)


def test_the_datamodule_counts_bigrams_inside_training_segments_only(tmp_path):
    text = random_text(3000, "abc")
    dm = CharTextDataModule(write(tmp_path, text), seq_len=10, num_blocks=6, val_fraction=0.34, seed=2)
    dm.load()
    index = {c: i for i, c in enumerate(dm.vocabulary)}
    expected = np.zeros_like(dm.bigram_counts)
    for s, e in dm.segments["train"]:
        for a, b in zip(text[s:e - 1], text[s + 1:e]):
            expected[index[a], index[b]] += 1
    assert np.array_equal(dm.bigram_counts, expected)
    assert dm.unigram_counts.sum() == sum(e - s for s, e in dm.segments["train"])


# -- the model --------------------------------------------------------------------------------------------
def tiny_model(dm: CharTextDataModule, **kwargs) -> CharLanguageModel:
    model = CharLanguageModel(dm.vocab_size, embedding_dim=16, hidden_size=48, **kwargs)
    model.vocabulary = list(dm.vocabulary)
    return model


def test_a_tiny_model_overfits_a_repeated_string_and_samples_it_back_greedily(tmp_path):
    torch.manual_seed(0)
    phrase = "hello world! "
    dm = CharTextDataModule(write(tmp_path, phrase * 20), seq_len=13, stride=1, batch_size=64, num_blocks=4)
    model = tiny_model(dm)
    batch = next(iter(dm.train_dataloader()))  # 64 windows: every phase of the phrase, several times
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(200):
        loss = bits_per_char(model.net(batch.inputs).logits, batch.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Only the first steps of a window are ambiguous ('l' -> 'l', 'o' or 'd'); with 3 characters of context
    # the next one is certain, and the model has learnt it.
    with torch.no_grad():
        late = bits_per_char(model.net(batch.inputs).logits[:, 3:], batch.targets[:, 3:])
    assert late.item() < 0.01 and loss.item() < 0.1
    assert model.generate("hel", 40, temperature=0) == ("hel" + (phrase * 5)[3:43])


def test_sampling_is_deterministic_with_a_seed_and_checks_its_arguments(tmp_path):
    torch.manual_seed(0)
    dm = CharTextDataModule(write(tmp_path, random_text(2000)), seq_len=16)
    model = tiny_model(dm)
    a = model.generate("the ", 60, temperature=1.0, seed=7)
    assert a == model.generate("the ", 60, temperature=1.0, seed=7) and a.startswith("the ") and len(a) == 64
    assert a != model.generate("the ", 60, temperature=1.0, seed=8)
    assert model.generate("the ", 30, temperature=0.7, top_k=1, seed=1) == model.generate("the ", 30, temperature=0)
    assert UNK not in model.generate("a", 300, temperature=5.0, seed=0)  # <unk> is never generated
    with pytest.raises(UserInputError, match="temperature=-0.5 must be >= 0"):
        model.generate("a", 5, temperature=-0.5)
    with pytest.raises(UserInputError, match="prime is empty"):
        model.generate("", 5)
    with pytest.warns(UserWarning, match="1 character\\(s\\) the vocabulary lacks .*<unk>"):
        assert model.generate("aQQb", 3, seed=0).startswith("aQQb")


def test_monitoring_contract_many_to_many(tmp_path):
    dm = CharTextDataModule(write(tmp_path, random_text(2000)), seq_len=12, batch_size=4)
    model = CharLanguageModel(dm.vocab_size, embedding_dim=8, hidden_size=10, num_layers=2, cell="lstm")
    assert is_traceable(model) and model.last_trace is None
    batch = next(iter(dm.val_dataloader()))
    trace = model.trace(batch)
    assert set(trace.hidden) == {"rnn_l0", "rnn_l1"} and trace.hidden["rnn_l1"].shape == (4, 12, 10)
    assert trace.inputs.shape == (4, 12, 8) and trace.mask.all() and set(trace.cell) == {"rnn_l0", "rnn_l1"}
    model.trace_requested = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer may warn; the step itself is under test
        loss = model.training_step(batch, 0)
    loss.backward()
    grad = model.last_trace.inputs.grad
    assert grad is not None and grad.shape == (4, 12, 8)
    # many-to-many: the loss reaches every position directly, so even the last input gets a gradient
    assert grad[:, -1].norm() > 0 and grad[:, 0].norm() > 0


@pytest.mark.parametrize("cell,tie", [("gru", True), ("rnn", False)])
def test_cells_and_tied_weights(cell, tie):
    net = CharRNN(30, embedding_dim=8, hidden_size=12, cell=cell, tie_weights=tie)
    out = net(torch.randint(0, 30, (3, 5)))
    assert out.logits.shape == (3, 5, 30) and out.state.shape == (1, 3, 12)
    assert (net.decoder.weight is net.embedding.weight) == tie
    carried = net(torch.randint(0, 30, (3, 1)), out.state)  # the state a generation step carries
    assert carried.logits.shape == (3, 1, 30)


# -- end to end: train.py, checkpoint alone, src.sample -------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("char_lm")
    text = read_corpus(None)[:30000]
    path = tmp / "poems.txt"
    path.write_text(text, encoding="utf-8")
    cli = cli_main(["fit", "--config", str(ROOT / "configs/char_lm.yaml"), "--data.path", str(path),
                    "--data.seq_len", "64", "--data.batch_size", "32", "--model.hidden_size", "64",
                    "--model.sample_length", "40", "--trainer.max_epochs", "2",
                    "--trainer.default_root_dir", str(tmp), *QUIET])
    return cli, tmp / "lightning_logs" / "version_0"


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
    assert stop.value.code == 2 and err.startswith("error: temperature=-1.0 must be >= 0") and err.count("\n") == 1
    other = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {}, MODEL_CLASS_KEY: "TextClassifier"}, other)
    with pytest.raises(SystemExit) as stop:
        sample_main(["--ckpt_path", str(other)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "holds a TextClassifier, not a CharLanguageModel" in err
    assert "python -m src.predict" in err
