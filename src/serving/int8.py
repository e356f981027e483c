"""int8 copies of a classifier for CPU serving: PyTorch's dynamic quantization (``model_int8.pt``) and ONNX
Runtime's (``model_int8.onnx``, the fastest of the four backends on CPU: docs/benchmarks.md).

``model_int8.pt`` holds the LSTM/GRU/Linear layers as int8 weights and the embedding as 8-bit rows, plain tensors
loadable with ``torch.load(weights_only=True)``; ``load_int8`` turns it back into a ``PyTorchClassifier``.

PyTorch API: ``torch.ao.quantization.quantize_dynamic``. On this torch it emits a DeprecationWarning that points to
torchao's ``quantize_``; that replacement only quantizes ``nn.Linear`` (no int8 LSTM/GRU kernels), and the
recurrent layers are where a classifier spends its time, so ``quantize_dynamic`` remains the only PyTorch API that
does the job. The warning is silenced only around that call. ``nn.RNN`` (``cell: rnn``) has no dynamic int8
kernel: only its Linear head is quantized.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from data_modules.vocabulary import Vocabulary
from src.models.rnn_classifier import RNNClassifier
from src.serving.pytorch_classifier import PyTorchClassifier, build_network
from src.utils.errors import UserInputError

INT8_FILE, INT8_ONNX_FILE = "model_int8.pt", "model_int8.onnx"
INT8_FORMAT = "rnn_lab/int8-dynamic/1"


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


def save_int8(classifier: PyTorchClassifier, quantized: RNNClassifier, path: str | Path) -> Path:
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
        "model_class": "TextClassifier",
        "quantization": ("torch.ao.quantization.quantize_dynamic: qint8 nn.LSTM, nn.GRU, nn.Linear; "
                         "nn.Embedding weight-only (float_qparams)"),
        "hyper_parameters": classifier.hyper_parameters,
        "vocabulary": classifier.vocabulary.tokens,
        "label_names": list(classifier.label_names),
        "max_len": classifier.max_len,
        "float_state": floats,
        "int8_layers": layers,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_int8(path: str | Path) -> PyTorchClassifier:
    """``model_int8.pt`` -> a ``PyTorchClassifier`` (CPU) whose network is the int8 one."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserInputError(f"int8 model not found: {p} (python -m src.export ... --quantize writes it)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")  # how qint8 tensors load
            payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{p} cannot be read ({first}); re-export it with python -m src.export "
                             "--quantize") from None
    if not isinstance(payload, dict) or payload.get("format") != INT8_FORMAT:
        raise UserInputError(f"{p} is not an int8 model written by python -m src.export --quantize")
    net = build_network(payload["hyper_parameters"], p)
    net.load_state_dict(payload["float_state"], strict=False)  # embedding (and any unquantized layer)
    net = quantize_int8(net)
    quantized = _quantized_modules(net)
    for name, tensors in payload["int8_layers"].items():
        target = quantized[name]
        if hasattr(target, "_all_weight_values"):
            target.set_weight_bias(tensors)
        elif "bias" not in tensors:
            target.set_weight(tensors["weight"])
        else:
            target.set_weight_bias(tensors["weight"], tensors["bias"])
    return PyTorchClassifier(net, Vocabulary(payload["vocabulary"]), payload["label_names"], payload["max_len"],
                             payload["hyper_parameters"])


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
        # Symbolic shape inference changes nothing in these graphs (the same ops come out), and where it cannot infer
        # every shape it saves sym_shape_infer_temp.onnx into the working directory: skipped.
        quant_pre_process(str(onnx_path), str(folded), skip_symbolic_shape=True)
        quantize_dynamic(str(folded), str(out_path), weight_type=QuantType.QInt8)
    return out_path
