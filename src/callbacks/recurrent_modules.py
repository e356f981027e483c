"""The recurrent modules of any model, found by walking its module tree and named by what they are.

Names follow the hidden-state names of the monitoring contract (src/models/recurrent_trace.py): the cell and the
layer (``lstm_l0``, ``gru_l1_reverse``), prefixed by the part of the model when it holds several recurrent modules
(``encoder_lstm_l0``, ``decoder_gru_l0``). The same names key the hidden-state, gate and parameter-norm tags, so
``hidden/lstm_l0/...``, ``gates/lstm_l0/...`` and ``gradnorm/lstm_l0_log10`` are one layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from torch import nn

from src.models.recurrent_stack import RecurrentStack

# Path components that say "a recurrent module" and nothing about which part of the model it is.
GENERIC = {"rnn", "lstm", "gru", "recurrent", "net", "model", "module", "layers", "reverse_layers", "cell"}
_LAYER_PARAMETER = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")


def cell_of(module: nn.Module) -> str:
    """``nn.LSTM`` -> ``lstm``, ``nn.GRU`` -> ``gru``, ``nn.RNN`` (tanh or relu) -> ``rnn``."""
    return "lstm" if isinstance(module, nn.LSTM) else "gru" if isinstance(module, nn.GRU) else "rnn"


@dataclass
class RecurrentModule:
    """One ``nn.RNN/LSTM/GRU`` of a model: where it is, and how its layers are named.

    A layer of our ``RecurrentStack`` is a one-layer module with the stack's layer name (``fixed``); any other
    module's layers are ``<name>_l<k>`` (``_reverse`` for a bidirectional one's second direction).
    """

    path: str
    name: str
    module: nn.RNNBase
    fixed: Optional[str] = None

    @property
    def cell(self) -> str:
        return cell_of(self.module)

    def layer_name(self, layer: int, reverse: bool = False) -> str:
        if self.fixed is not None:
            return self.fixed
        return f"{self.name}_l{layer}" + ("_reverse" if reverse else "")


def recurrent_modules(root: nn.Module) -> list[RecurrentModule]:
    """Every ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` under ``root``, in definition order, named.

    One recurrent module: named by its cell (``lstm``). Several: by the meaningful part of their path and their
    cell (``encoder.rnn`` -> ``encoder_lstm``), made unique with the full path where that is not enough.
    """
    stacks: dict[int, str] = {}
    for stack in (m for m in root.modules() if isinstance(m, RecurrentStack)):
        for i, layer in enumerate(stack.layers):
            stacks[id(layer)] = f"{stack.name}_l{i}"
        for i, layer in enumerate(stack.reverse_layers):
            stacks[id(layer)] = f"{stack.name}_l{i}_reverse"
    found = [(path, m) for path, m in root.named_modules() if isinstance(m, nn.RNNBase)]
    plain = [(path, m) for path, m in found if id(m) not in stacks]
    names: dict[str, str] = {}
    if len(plain) == 1:
        names[plain[0][0]] = cell_of(plain[0][1])
    else:
        for path, module in plain:
            parts = [p for p in path.split(".") if p not in GENERIC and not p.isdigit()]
            names[path] = "_".join([*parts, cell_of(module)])
        taken = list(names.values())
        for path, module in plain:  # two modules with one meaningful name: their full paths tell them apart
            if taken.count(names[path]) > 1:
                names[path] = f"{path.replace('.', '_')}_{cell_of(module)}"
    return [RecurrentModule(path, names.get(path, stacks.get(id(m), "")), m, stacks.get(id(m))) for path, m in found]


def parameter_groups(root: nn.Module) -> dict[str, str]:
    """Parameter name -> the layer it belongs to, for per-layer gradient norms.

    A recurrent parameter belongs to its layer and direction (``weight_hh_l1_reverse`` of the model's LSTM ->
    ``lstm_l1_reverse``); any other to the module that owns it, by the shortest end of its path that no other
    owner shares (``net.embedding`` -> ``embedding``, ``net.head`` -> ``head``).
    """
    recurrent = {m.path: m for m in recurrent_modules(root)}
    groups, owners = {}, {}
    for name, _ in root.named_parameters():
        owner, _, local = name.rpartition(".")
        match = _LAYER_PARAMETER.match(local)
        if owner in recurrent and match:
            groups[name] = recurrent[owner].layer_name(int(match.group(3)), bool(match.group(4)))
        else:
            owners[name] = owner
    paths = sorted(set(owners.values()))
    for name, owner in owners.items():
        groups[name] = _short_name(owner, paths) if owner else name
    return groups


def _short_name(path: str, paths: list[str]) -> str:
    """The shortest dotted end of ``path`` that ends no other path of ``paths``, dots as ``_``."""
    parts = path.split(".")
    for n in range(1, len(parts) + 1):
        tail = ".".join(parts[-n:])
        if not any(other != path and (other == tail or other.endswith("." + tail)) for other in paths):
            return tail.replace(".", "_")
    return path.replace(".", "_")


def snake_case(class_name: str) -> str:
    """``TextClassifier`` -> ``text_classifier``: the first part of a run's folder name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()


def run_name(model: nn.Module) -> str:
    """What a run trained, for its log folder: the model's class in snake_case and its cell(s), e.g.
    ``text_classifier-lstm``, ``sensor_classifier-gru``, ``seq2seq-lstm+gru``; the class alone without one."""
    words = snake_case(type(model).__name__)
    hparams = getattr(model, "hparams", None)
    cell = hparams.get("cell") if isinstance(hparams, dict) or hasattr(hparams, "get") else None
    if not isinstance(cell, str):
        cells = list(dict.fromkeys(m.cell for m in recurrent_modules(model)))
        cell = "+".join(cells) if cells else None
    return f"{words}-{cell}" if cell else words
