"""The layout's rules, checked on the code itself: a file's folder says what it may import.

Layers, lowest first; a file imports from its own layer or lower ones only:

    src/utils -> data_modules -> src/models -> src/serving -> src/callbacks -> src/lightning_modules
              -> src/experiments -> src/*.py (the commands) -> train.py
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.common import ROOT

LAYERS = ["src/utils", "data_modules", "src/models", "src/serving", "src/callbacks", "src/lightning_modules",
          "src/experiments", "src", "train.py"]
LIGHTNING = ("pytorch_lightning", "lightning", "torchmetrics")


def project_files() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "data_modules").glob("*.py"), ROOT / "train.py"])


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(path: Path) -> int:
    """Index in LAYERS of the most specific layer holding ``path`` (src/models/x.py is src/models, not src)."""
    where = path.relative_to(ROOT).as_posix()
    return max((len(name), i) for i, name in enumerate(LAYERS) if where == name or where.startswith(name + "/"))[1]


def imports(path: Path) -> set[str]:
    """Every module the file imports, at any depth, except under ``if TYPE_CHECKING:`` (never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = [node for node in ast.walk(tree)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
    skipped = {id(n) for node in guarded for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from src import predict`
    return found


FILES = {module_name(p): p for p in project_files()}
GRAPH = {name: {m for m in imports(path) if m in FILES and m != name} for name, path in FILES.items()}


@pytest.mark.parametrize("name", sorted(FILES))
def test_imports_go_down_the_layers(name):
    mine = layer(FILES[name])
    upward = sorted(m for m in GRAPH[name] if layer(FILES[m]) > mine)
    assert not upward, f"{name} ({LAYERS[mine]}) imports from a higher layer: {upward}"


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(GRAPH[name]):
            if state.get(other) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(other):] + [other]))
            if other not in state:
                visit(other, path + [other])
        state[name] = 2

    for name in sorted(FILES):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("folder", ["data_modules", "src/utils"])
def test_data_imports_no_model_and_no_training(folder):
    for path in FILES.values():
        if path.relative_to(ROOT).as_posix().startswith(folder + "/"):
            above = ("src.models", "src.lightning_modules", "src.callbacks", "src.serving")
            bad = sorted(m for m in imports(path) if m.startswith(above))
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("folder", ["src/serving", "src/models", "src/utils"])
def test_serving_models_and_utils_import_no_lightning(folder):
    for path in FILES.values():
        if path.relative_to(ROOT).as_posix().startswith(folder + "/"):
            bad = sorted(m for m in imports(path)
                         if m.split(".")[0] in LIGHTNING or m.startswith("src.lightning_modules"))
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_serving_runs_with_lightning_absent(tmp_path):
    """The proof that matters to a user: with Lightning and torchmetrics made unimportable, the serving layer
    and the commands built on it load and predict (a checkpoint read with torch.load alone)."""
    import torch

    from data_modules.vocabulary import Vocabulary
    from src.models.rnn_classifier import RNNClassifier

    torch.manual_seed(0)
    net = RNNClassifier(vocab_size=6, embedding_dim=4, hidden_size=4)
    ckpt = tmp_path / "tiny.ckpt"
    vocabulary = Vocabulary.build([["good", "bad", "film", "plot"]])
    torch.save({"model_class": "TextClassifier", "vocabulary": vocabulary.tokens, "label_names": ["neg", "pos"],
                "max_len": 10, "hyper_parameters": {"vocab_size": 6, "embedding_dim": 4, "hidden_size": 4},
                "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    script = f"""
import sys
for name in {LIGHTNING!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import importlib, pkgutil, src.serving
for info in pkgutil.iter_modules(src.serving.__path__):
    importlib.import_module("src.serving." + info.name)
import src.explain, src.export, src.predict
from src.serving.pytorch_classifier import PyTorchClassifier
print(PyTorchClassifier.from_checkpoint({str(ckpt)!r}).predict_texts(["good film", "bad plot"])[0].label)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() in ("neg", "pos")


def test_no_file_name_is_used_in_two_src_folders():
    names = Counter(p.name for p in (ROOT / "src").rglob("*.py") if p.name != "__init__.py")
    assert not [n for n, count in names.items() if count > 1]
