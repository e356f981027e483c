"""Export a classifier's network to ONNX with a dynamic batch size and length, checked against PyTorch.

``export_onnx(net, "DIR/model.onnx")`` writes the graph: inputs ``tokens [batch, time]`` int64 and ``lengths
[batch]`` int64, output ``logits [batch]``; P(label 1) = sigmoid(logit). The vocabulary goes beside it as
``vocab.json`` (src/serving/vocabulary_file.py), so ONNX Runtime alone can serve it (src/serving/onnx_classifier.py).
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from data_modules.batching import pad_collate
from src.models.recurrent_stack import RecurrentOutput, reverse_index
from src.models.recurrent_trace import mask_from_lengths
from src.models.rnn_classifier import RNNClassifier
from src.serving.onnx_classifier import onnx_session
from src.utils.errors import UserInputError

ONNX_FILE = "model.onnx"


class ExportableClassifier(nn.Module):
    """The same function as ``RNNClassifier`` in eval mode, in a form ``torch.onnx.export`` keeps dynamic.

    tokens ``[B, T]`` int64, lengths ``[B]`` int64 -> logits ``[B]``.

    The stack already runs every layer on the padded batch (the reverse direction on each sequence reversed
    within its length), which exports as ONNX ``LSTM``/``GRU`` ops. Three things differ from its forward:
    ``pack=True`` layers run padded (the valid outputs are the same); a tanh ``nn.RNN`` becomes its exact GRU
    twin (torch.export would unroll it over a fixed length); and the padding is zeroed between layers, which
    changes no valid output but keeps the exporter from fixing the length of a layer fed by another. Dropout
    is the identity at inference and is left out.
    """

    def __init__(self, net: RNNClassifier):
        super().__init__()
        self.net = net
        self.forward_layers = nn.ModuleList(_exportable(layer) for layer in net.rnn.layers)
        self.reverse_layers = nn.ModuleList(_exportable(layer) for layer in getattr(net.rnn, "reverse_layers", []))

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        steps = tokens.size(1)
        mask = mask_from_lengths(lengths, steps)  # [B, T]
        keep = mask.unsqueeze(-1).to(self.net.embedding.weight.dtype)  # [B, T, 1]
        x = self.net.embedding(tokens)  # [B, T, E]
        order = reverse_index(lengths, steps) if len(self.reverse_layers) else None  # [B, T, 1], its own inverse
        for i, layer in enumerate(self.forward_layers):
            outputs = [layer(x)[0]]  # [B, T, H]
            if order is not None:
                back = self.reverse_layers[i](x.gather(1, order.expand(-1, -1, x.size(-1))))[0]
                outputs.append(back.gather(1, order.expand(-1, -1, back.size(-1))))
            x = torch.cat(outputs, dim=-1)  # [B, T, H * dirs]
            if i < len(self.forward_layers) - 1:
                x = x * keep  # the pooling masks the last layer's padding itself: a Mul less (~4% of ORT's time)
        pooled = self.net.pool(RecurrentOutput(x, {}, x, None, {}), lengths, mask)  # [B, H * dirs]
        return self.net.head(pooled).squeeze(-1)


def _exportable(layer: nn.RNNBase) -> nn.RNNBase:
    """A unidirectional 1-layer RNN as a layer ONNX can take with a dynamic length.

    torch.export unrolls ``nn.RNN`` over time (its length would become a constant), while LSTM and GRU map to
    ONNX's own ops. A tanh RNN is exactly a GRU whose reset gate is pinned open and whose update gate is pinned
    shut, so it is exported as one; a relu RNN has no such twin.
    """
    if layer.bidirectional or layer.num_layers != 1:
        raise ValueError("expected the unidirectional 1-layer RNNs of RecurrentStack")
    if isinstance(layer, nn.RNN):
        if layer.nonlinearity != "tanh":
            raise UserInputError("an RNN with nonlinearity=relu cannot be exported to ONNX with a dynamic length "
                                 "(torch.export unrolls it); train with --model.nonlinearity tanh or --model.cell gru")
        return _tanh_rnn_as_gru(layer)
    return layer


GATE_BIAS = 30.0  # sigmoid(30) is 1.0 and sigmoid(-30) is 1e-13 in float32: the gates are pinned


def _tanh_rnn_as_gru(layer: nn.RNN) -> nn.GRU:
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh) as a GRU: r = 1 so n is that expression, z = 0 so h' = n."""
    state = layer.state_dict()
    w_ih, w_hh = state["weight_ih_l0"], state["weight_hh_l0"]  # [H, I], [H, H]
    size = layer.hidden_size
    b_ih = state.get("bias_ih_l0", torch.zeros(size, device=w_ih.device))
    b_hh = state.get("bias_hh_l0", torch.zeros(size, device=w_ih.device))
    gru = nn.GRU(layer.input_size, size, batch_first=True).to(w_ih.device)
    pinned = torch.full((size,), GATE_BIAS, device=w_ih.device)
    # PyTorch stacks the GRU gates as (reset, update, new).
    gru.load_state_dict({
        "weight_ih_l0": torch.cat([torch.zeros_like(w_ih), torch.zeros_like(w_ih), w_ih]),
        "weight_hh_l0": torch.cat([torch.zeros_like(w_hh), torch.zeros_like(w_hh), w_hh]),
        "bias_ih_l0": torch.cat([pinned, -pinned, b_ih]),
        "bias_hh_l0": torch.cat([torch.zeros_like(b_hh), torch.zeros_like(b_hh), b_hh]),
    })
    return gru


# -- writing and checking the ONNX file --------------------------------------------------------------------------------
def example_batch(vocab_size: int, pad_index: int, lengths=(7, 3, 5), seed: int = 0):
    """A padded batch of random known tokens with mixed lengths: tokens ``[B, T]``, lengths ``[B]``."""
    rng = np.random.default_rng(seed)
    low = min(2, vocab_size - 1)
    items = [(rng.integers(low, vocab_size, size=n).tolist(), 0.0) for n in lengths]
    batch = pad_collate(items, pad_index)
    return batch.tokens, batch.lengths


def export_onnx(net: RNNClassifier, path: str | Path) -> Path:
    """Write ``net`` (eval mode) as ONNX with dynamic batch and length, through ``torch.export``."""
    from torch.export import Dim

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = ExportableClassifier(copy.deepcopy(net).cpu().eval()).eval()  # may refuse a relu RNN
    tokens, lengths = example_batch(net.embedding.num_embeddings, net.embedding.padding_idx or 0)
    batch, time = Dim("batch", min=1), Dim("time", min=1)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    try:
        with warnings.catch_warnings():
            # torch.export's own notes (deprecated internals, constant-folded RNN weights, torchvision ops it
            # skips) are not the user's concern.
            warnings.simplefilter("ignore")
            exporter_log.setLevel(logging.ERROR)
            # torch.onnx swaps in loop-free LSTM/GRU kernels for dynamic shapes, but the op's dispatch cache keeps
            # the first export's choice, so a second export in one process would fix the length. Clearing it
            # avoids that.
            for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
                op._dispatch_cache.clear()
            torch.onnx.export(model, (tokens, lengths), str(path), dynamo=True, external_data=False,
                              input_names=["tokens", "lengths"], output_names=["logits"],
                              dynamic_shapes={"tokens": {0: batch, 1: time}, "lengths": {0: batch}}, verbose=False)
    finally:
        exporter_log.setLevel(level)
    _check_dynamic(path)
    return path


def _check_dynamic(path: Path) -> None:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    fixed = [i.name for i in graph.input if any(d.dim_value for d in i.type.tensor_type.shape.dim)]
    if fixed:
        raise RuntimeError(f"the exported {path.name} has a fixed size for {fixed}; the exporter did not keep the "
                           "batch and length dynamic")


def max_logit_difference(net: RNNClassifier, onnx_path: str | Path, tokens: Tensor, lengths: Tensor) -> float:
    """Largest |logit| difference between ``net`` (eval) and the ONNX file on one padded batch."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        expected = net(tokens.to(next(net.parameters()).device), lengths).logits.float().cpu().numpy()
    net.train(was_training)
    got = onnx_session(onnx_path).run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})[0]
    return float(np.abs(got - expected).max())
