"""Export a trained TextClassifier for serving: ONNX with its vocabulary beside it, and int8 dynamic quantization.

    python -m src.export --ckpt_path CKPT --output DIR [--quantize]

writes ``DIR/model.onnx`` (inputs ``tokens [batch, time]`` int64 and ``lengths [batch]`` int64, output
``logits [batch]``; P(label 1) = sigmoid(logit)) and ``DIR/vocab.json`` (tokens, label names, max_len and how
to tokenize, so a user can run the model with ONNX Runtime alone). ``--quantize`` also writes
``DIR/model_int8.pt``: the LSTM/GRU/Linear layers as int8 weights and the embedding as 8-bit rows, plain
tensors loadable with ``torch.load(weights_only=True)``; ``load_int8`` turns it back into a TextClassifier.
And ``DIR/model_int8.onnx``: ONNX Runtime's own dynamic int8 quantization of ``model.onnx`` (same inputs, same
``vocab.json``), the fastest of the four on CPU (docs/benchmarks.md: 1.8-2x PyTorch fp32 at batch 256, where
PyTorch's int8 LSTM is slower than its fp32 one).

int8 API: ``torch.ao.quantization.quantize_dynamic``. On this torch it emits a DeprecationWarning that points
to torchao's ``quantize_``; that replacement only quantizes ``nn.Linear`` (no int8 LSTM/GRU kernels), and the
recurrent layers are where a classifier spends its time, so ``quantize_dynamic`` remains the only PyTorch API
that does the job. The warning is silenced only around that call. ``nn.RNN`` (``cell: rnn``) has no dynamic
int8 kernel: only its Linear head is quantized.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from data_modules import text as text_lib
from data_modules.batching import pad_collate
from src.errors import UserInputError, exit_on_user_error
from src.models.classifier import RNNClassifier
from src.models.recurrent import RecurrentOutput, reverse_index
from src.monitoring import mask_from_lengths

ONNX_FILE, VOCAB_FILE, INT8_FILE, INT8_ONNX_FILE = "model.onnx", "vocab.json", "model_int8.pt", "model_int8.onnx"
INT8_FORMAT = "rnn_lab/int8-dynamic/1"
VOCAB_FORMAT = "rnn_lab/vocab/1"


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
        pooled = self.net.pool(RecurrentOutput(x, {}, x, None), lengths, mask)  # [B, H * dirs]
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


# -- ONNX -------------------------------------------------------------------------------------------------
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


def quantize_onnx(onnx_path: str | Path, out_path: str | Path) -> Path:
    """ONNX Runtime's dynamic int8 quantization of an exported model (LSTM/GRU/MatMul weights int8, activations
    quantized on the fly) -> ``out_path``."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        # Pre-processing folds the exporter's gate reordering into constant LSTM/GRU weights, which the quantizer
        # needs to turn LSTM into DynamicQuantizeLSTM (and GRU into its int8 form).
        folded = Path(tmp) / "folded.onnx"
        quant_pre_process(str(onnx_path), str(folded))
        quantize_dynamic(str(folded), str(out_path), weight_type=QuantType.QInt8)
    return out_path


def onnx_session(path: str | Path, threads: Optional[int] = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # only errors: ORT's notes about unused initializers are noise here
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{path} is not an ONNX model ONNX Runtime can load ({first}); "
                             "re-export it with python -m src.export") from None


def max_logit_difference(net: RNNClassifier, onnx_path: str | Path, tokens: Tensor, lengths: Tensor) -> float:
    """Largest |logit| difference between ``net`` (eval) and the ONNX file on one padded batch."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        expected = net(tokens.to(next(net.parameters()).device), lengths).logits.float().cpu().numpy()
    net.train(was_training)
    got = onnx_session(onnx_path).run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})[0]
    return float(np.abs(got - expected).max())


def vocab_payload(module) -> dict:
    """What ``vocab.json`` holds: everything needed to turn text into the model's inputs and read its output."""
    if module.vocabulary is None:
        raise UserInputError("this model has no vocabulary: export a checkpoint written by train.py")
    return {
        "format": VOCAB_FORMAT,
        "tokens": module.vocabulary.tokens,
        "pad_index": module.vocabulary.pad_index,
        "unk_index": module.vocabulary.unk_index,
        "label_names": list(module.label_names),
        "max_len": module.max_len,
        "tokenizer": {
            "description": ("lowercase the text; replace HTML line breaks (html_break) by a space; the tokens are "
                            "the matches of word, left to right; keep the first max_len tokens (all if max_len is "
                            "null); a token not in tokens is unk_index; a text without tokens is [unk_index]"),
            "lowercase": True,
            "html_break": text_lib._HTML_BREAK.pattern,
            "word": text_lib._WORD.pattern,
        },
        "inputs": {"tokens": "int64 [batch, time], padded with pad_index after each text",
                   "lengths": "int64 [batch], tokens per text (>= 1)"},
        "output": "logits float32 [batch]; P(label_names[1]) = sigmoid(logit); label = label_names[P >= 0.5]",
    }


# -- int8 dynamic quantization --------------------------------------------------------------------------
def quantize_int8(net: RNNClassifier) -> RNNClassifier:
    """A copy of ``net`` for CPU inference: int8 LSTM/GRU/Linear weights with activations quantized on the fly,
    and the embedding table stored as 8-bit rows (weight-only; it is most of a classifier's bytes)."""
    from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig

    model = copy.deepcopy(net).cpu().eval()
    spec = {nn.LSTM: default_dynamic_qconfig, nn.GRU: default_dynamic_qconfig, nn.Linear: default_dynamic_qconfig,
            nn.Embedding: float_qparams_weight_only_qconfig}
    with warnings.catch_warnings():
        # See the module docstring: the deprecated API is the only one with int8 recurrent kernels.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def _quantized_modules(net: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized import Embedding
    from torch.ao.nn.quantized import dynamic as nnqd

    kinds = (nnqd.LSTM, nnqd.GRU, nnqd.Linear, Embedding)
    return {name: m for name, m in net.named_modules() if isinstance(m, kinds)}


def save_int8(module, quantized: RNNClassifier, path: str | Path) -> Path:
    """Write the int8 model as plain data: quantized weight tensors per quantized layer, float tensors for the rest."""
    from torch.ao.nn.quantized import Embedding
    from torch.ao.nn.quantized import dynamic as nnqd

    layers = {}
    for name, m in _quantized_modules(quantized).items():
        if isinstance(m, Embedding):
            layers[name] = {"weight": m.weight()}  # quint8 rows, each with its own float scale and offset
        elif isinstance(m, nnqd.Linear):
            layers[name] = {"weight": m.weight(), "bias": m.bias()}
        else:
            weights = m._weight_bias()  # the packed cell parameters, unpacked to qint8 weights + float biases
            layers[name] = {**weights["weight"], **weights["bias"]}
    floats = {k: v for k, v in quantized.state_dict().items()
              if isinstance(v, Tensor) and not any(k.startswith(n + ".") for n in layers)}
    payload = {
        "format": INT8_FORMAT,
        "model_class": type(module).__name__,
        "quantization": ("torch.ao.quantization.quantize_dynamic: qint8 nn.LSTM, nn.GRU, nn.Linear; "
                         "nn.Embedding weight-only (float_qparams)"),
        "hyper_parameters": dict(module.hparams),
        "vocabulary": module.vocabulary.tokens if module.vocabulary is not None else None,
        "label_names": list(module.label_names),
        "max_len": module.max_len,
        "float_state": floats,
        "int8_layers": layers,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_int8(path: str | Path):
    """``model_int8.pt`` -> a TextClassifier (eval, CPU) whose network is the int8 one; ``predict_texts`` works."""
    from data_modules.text import Vocabulary
    from src.classifier import TextClassifier

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserInputError(f"int8 model not found: {p} (python -m src.export ... --quantize writes it)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")  # how qint8 tensors load
            payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{p} cannot be read ({first}); re-export it with python -m src.export --quantize") from None
    if not isinstance(payload, dict) or payload.get("format") != INT8_FORMAT:
        raise UserInputError(f"{p} is not an int8 model written by python -m src.export --quantize")
    module = TextClassifier(**payload["hyper_parameters"])
    module.net.load_state_dict(payload["float_state"], strict=False)  # embedding (and any unquantized layer)
    module.net = quantize_int8(module.net)
    quantized = _quantized_modules(module.net)
    for name, tensors in payload["int8_layers"].items():
        target = quantized[name]
        if hasattr(target, "_all_weight_values"):
            target.set_weight_bias(tensors)
        elif "bias" not in tensors:
            target.set_weight(tensors["weight"])
        else:
            target.set_weight_bias(tensors["weight"], tensors["bias"])
    if payload.get("vocabulary") is not None:
        module.vocabulary = Vocabulary(payload["vocabulary"])
    module.label_names, module.max_len = list(payload["label_names"]), payload["max_len"]
    return module.eval()


# -- the command ------------------------------------------------------------------------------------------
def export(ckpt_path: str, output: str, quantize: bool = False, tolerance: float = 1e-4) -> dict[str, Path]:
    """Export a checkpoint into ``output``; checks the ONNX logits against PyTorch's before returning."""
    from src.classifier import TextClassifier

    module = TextClassifier.from_checkpoint(ckpt_path).eval()
    payload = vocab_payload(module)
    out = Path(output).expanduser()
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--output {out} is a file; give a folder to write {ONNX_FILE} and {VOCAB_FILE} into")
    out.mkdir(parents=True, exist_ok=True)
    written = {"onnx": export_onnx(module.net, out / ONNX_FILE)}
    (out / VOCAB_FILE).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    written["vocab"] = out / VOCAB_FILE
    tokens, lengths = example_batch(len(module.vocabulary), module.hparams.pad_index, lengths=(23, 1, 9, 16, 4), seed=1)
    difference = max_logit_difference(module.net, written["onnx"], tokens, lengths)
    if not difference <= tolerance:
        raise RuntimeError(f"the exported model's logits differ from PyTorch's by {difference:.2g} (> {tolerance})")
    if quantize:
        written["int8"] = save_int8(module, quantize_int8(module.net), out / INT8_FILE)
        written["int8_onnx"] = quantize_onnx(written["onnx"], out / INT8_ONNX_FILE)
    written["max_logit_difference"] = difference
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a TextClassifier checkpoint written by train.py")
    parser.add_argument("--output", required=True, help="folder for model.onnx and vocab.json (and model_int8.pt)")
    parser.add_argument("--quantize", action="store_true",
                        help="also write model_int8.pt (PyTorch int8 dynamic) and model_int8.onnx (ONNX Runtime int8)")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        written = export(args.ckpt_path, args.output, args.quantize)
    for key in ("onnx", "vocab", "int8", "int8_onnx"):
        if key in written:
            print(f"wrote {written[key]} ({written[key].stat().st_size / 1e6:.2f} MB)")
    print(f"ONNX Runtime logits match PyTorch's: max difference {written['max_logit_difference']:.1e} on a "
          "batch of mixed lengths")


if __name__ == "__main__":
    main()
