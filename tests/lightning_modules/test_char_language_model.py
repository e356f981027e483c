"""CharLanguageModel: overfitting a string, seeded sampling, the monitoring contract."""

import warnings

import pytest
import torch

from data_modules.char_text import UNK, CharTextDataModule
from src.lightning_modules.char_language_model import CharLanguageModel
from src.models.char_rnn import bits_per_char
from src.models.recurrent_trace import is_traceable
from src.utils.errors import UserInputError
from tests.common import random_text, write


# -- the model --------------------------------------------------------------------------------------------
def tiny_model(dm: CharTextDataModule, **kwargs) -> CharLanguageModel:
    model = CharLanguageModel(dm.vocab_size, embedding_dim=16, hidden_size=48, **kwargs)
    model.vocabulary = list(dm.vocabulary)
    return model


def test_a_tiny_model_overfits_a_repeated_string_and_samples_it_back_greedily(tmp_path):
    torch.manual_seed(0)
    phrase = "hello world! "
    dm = CharTextDataModule(write(tmp_path, phrase * 20), window_len=13, stride=1, batch_size=64, num_blocks=4)
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
    dm = CharTextDataModule(write(tmp_path, random_text(2000)), window_len=16)
    model = tiny_model(dm)
    a = model.generate("the ", 60, temperature=1.0, seed=7)
    assert a == model.generate("the ", 60, temperature=1.0, seed=7) and a.startswith("the ") and len(a) == 64
    assert a != model.generate("the ", 60, temperature=1.0, seed=8)
    assert model.generate("the ", 30, temperature=0.7, top_k=1, seed=1) == model.generate("the ", 30, temperature=0)
    assert UNK not in model.generate("a", 300, temperature=5.0, seed=0)  # <unk> is never generated
    with pytest.raises(UserInputError, match="temperature=-0.5 must be a finite number >= 0"):
        model.generate("a", 5, temperature=-0.5)
    with pytest.raises(UserInputError, match="prime is empty"):
        model.generate("", 5)
    with pytest.warns(UserWarning, match="1 character\\(s\\) the vocabulary lacks .*<unk>"):
        assert model.generate("aQQb", 3, seed=0).startswith("aQQb")


def test_monitoring_contract_many_to_many(tmp_path):
    dm = CharTextDataModule(write(tmp_path, random_text(2000)), window_len=12, batch_size=4)
    model = CharLanguageModel(dm.vocab_size, embedding_dim=8, hidden_size=10, num_layers=2, cell="lstm")
    assert is_traceable(model) and model.last_trace is None
    batch = next(iter(dm.val_dataloader()))
    trace = model.trace(batch)
    assert set(trace.hidden) == {"lstm_l0", "lstm_l1"} and trace.hidden["lstm_l1"].shape == (4, 12, 10)
    assert trace.inputs.shape == (4, 12, 8) and trace.mask.all() and set(trace.cell) == {"lstm_l0", "lstm_l1"}
    assert set(trace.layers) == set(trace.hidden)  # what the gate statistics read
    model.trace_requested = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer may warn; the step itself is under test
        loss = model.training_step(batch, 0)
    loss.backward()
    grad = model.last_trace.inputs.grad
    assert grad is not None and grad.shape == (4, 12, 8)
    # many-to-many: the loss reaches every position directly, so even the last input gets a gradient
    assert grad[:, -1].norm() > 0 and grad[:, 0].norm() > 0
