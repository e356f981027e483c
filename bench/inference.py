"""Inference benchmark: PyTorch fp32 eager vs int8 dynamic vs ONNX Runtime on the same IMDB validation reviews.

    python bench/inference.py                                     # trains a small IMDB LSTM first (minutes)
    python bench/inference.py --ckpt_path RUN/checkpoints/best-epoch=01.ckpt

Measures, on CPU with the same thread count for every backend:
- latency at batch 1 (p50 / p95 over ``--latency_reviews`` single reviews, each backend in turn per review),
- throughput at batch 256 (reviews/s over the whole validation split, batched by length as ``predict_texts``
  does; the median of ``--repeats`` passes, the backends taking turns on every batch so that load on the machine
  hits all alike),
- model file size, accuracy on the validation labels and agreement of predicted labels with fp32.
Timings cover the model call on already-encoded batches (tokenization is the same code for every backend).
The ratios printed at the end are measured in this run.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_modules.batching import pad_collate  # noqa: E402
from src.export import export  # noqa: E402
from src.serving.int8 import INT8_FILE, INT8_ONNX_FILE, load_int8  # noqa: E402
from src.serving.onnx_classifier import onnx_session  # noqa: E402
from src.serving.onnx_export import ONNX_FILE  # noqa: E402
from src.serving.pytorch_classifier import PyTorchClassifier  # noqa: E402

TRAIN_ARGS = ["--model.embedding_dim", "64", "--model.hidden_size", "128", "--data.max_len", "256",
              "--data.batch_size", "64", "--trainer.max_epochs", "2"]


def train(source: str, workdir: Path) -> Path:
    from train import cli_main

    root = workdir / "run"
    cli_main(["fit", "--config", str(ROOT / "configs/imdb_lstm.yaml"), "--data.source", source, *TRAIN_ARGS,
              "--trainer.default_root_dir", str(root), "--trainer.accelerator", "cpu",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    runs = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return next(p for p in sorted((runs[-1] / "checkpoints").glob("*.ckpt")) if p.name != "last.ckpt")


def validation_split(ckpt: Path, module: PyTorchClassifier):
    """The run's own validation split, rebuilt from the config.yaml LightningCLI saved beside checkpoints/."""
    config = yaml.safe_load((ckpt.parent.parent / "config.yaml").read_text())["data"]
    module_name, _, class_name = config["class_path"].rpartition(".")
    data = getattr(importlib.import_module(module_name), class_name)(**config.get("init_args", {}))
    data.load()
    if data.vocabulary.tokens != module.vocabulary.tokens:
        raise SystemExit("the rebuilt data's vocabulary differs from the checkpoint's; pass the run's own checkpoint")
    return data.datasets["val"]


def length_batches(dataset, batch_size: int, pad_index: int) -> list:
    order = np.argsort(dataset.lengths, kind="stable")
    return [(rows, pad_collate([dataset[i] for i in rows], pad_index))
            for rows in (order[i:i + batch_size] for i in range(0, len(order), batch_size))]


def backends(module, export_dir: Path, threads: int) -> dict:
    """name -> function(tokens [B, T] int64 tensor, lengths [B]) -> logits [B] numpy."""
    int8 = load_int8(export_dir / INT8_FILE).net
    fp32 = module.net.eval()
    onnx_fp32 = onnx_session(export_dir / ONNX_FILE, threads)
    onnx_int8 = onnx_session(export_dir / INT8_ONNX_FILE, threads)

    def eager(net):
        def run(tokens, lengths):
            with torch.inference_mode():
                return net(tokens, lengths).logits.numpy()
        return run

    def ort(session):
        return lambda tokens, lengths: session.run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})[0]

    return {"PyTorch fp32 eager": eager(fp32), "PyTorch int8 dynamic": eager(int8),
            "ONNX Runtime fp32": ort(onnx_fp32), "ONNX Runtime int8 dynamic": ort(onnx_int8)}


def state_dict_bytes(net) -> int:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", help="a TextClassifier checkpoint of an IMDB run (default: train one)")
    parser.add_argument("--source", default=str(ROOT.parent / "shared/data/imdb/train.parquet"),
                        help="IMDB source for the training run (--data.source)")
    parser.add_argument("--workdir", default=str(ROOT / ".cache/bench_inference"))
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every backend")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="throughput passes per backend (median)")
    parser.add_argument("--latency_reviews", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    ckpt = Path(args.ckpt_path) if args.ckpt_path else train(args.source, workdir)
    module = PyTorchClassifier.from_checkpoint(ckpt)
    val = validation_split(ckpt, module)
    export_dir = workdir / "export"
    written = export(str(ckpt), str(export_dir), quantize=True)
    runners = backends(module, export_dir, args.threads)
    batches = length_batches(val, args.batch_size, module.pad_index)
    labels = val.labels.astype(int)

    # Correctness on the whole validation split.
    logits = {}
    for name, run in runners.items():
        out = np.zeros(len(val), dtype=np.float32)
        for rows, batch in batches:
            out[rows] = run(batch.tokens, batch.lengths)
        logits[name] = out
    reference = logits["PyTorch fp32 eager"]

    # Throughput at batch 256: whole passes, backends interleaved, the median pass per backend.
    for run in runners.values():  # warm-up: allocations, ORT's first-run planning
        run(batches[-1][1].tokens, batches[-1][1].lengths)
    # Interleaved per batch (each backend runs the batch in turn, the order rotating): on a shared machine load
    # comes in regimes of seconds, which whole passes per backend (~1 s each) caught unevenly.
    names = list(runners)
    passes = {name: [] for name in runners}
    for repeat in range(args.repeats):
        seconds = dict.fromkeys(names, 0.0)
        for index, (_, batch) in enumerate(batches):
            shift = (repeat + index) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                runners[name](batch.tokens, batch.lengths)
                seconds[name] += time.perf_counter() - start
        for name in names:
            passes[name].append(seconds[name])

    # Latency at batch 1: the same reviews, each backend in turn per review.
    singles = [pad_collate([val[i]], module.pad_index) for i in range(min(args.latency_reviews, len(val)))]
    latency = {name: [] for name in runners}
    for batch in singles:
        for name, run in runners.items():
            start = time.perf_counter()
            run(batch.tokens, batch.lengths)
            latency[name].append((time.perf_counter() - start) * 1e3)

    sizes = {"PyTorch fp32 eager": state_dict_bytes(module.net), "PyTorch int8 dynamic": written["int8"].stat().st_size,
             "ONNX Runtime fp32": written["onnx"].stat().st_size,
             "ONNX Runtime int8 dynamic": written["int8_onnx"].stat().st_size}
    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), "
                          f"torch {torch.__version__}", "checkpoint": str(ckpt), "reviews": len(val),
               "mean_tokens": float(val.lengths.mean()), "hparams": dict(module.hyper_parameters),
               "checkpoint_bytes": ckpt.stat().st_size, "backends": {}}
    for name in runners:
        predicted = (logits[name] >= 0).astype(int)
        results["backends"][name] = {
            "latency_p50_ms": float(np.percentile(latency[name], 50)),
            "latency_p95_ms": float(np.percentile(latency[name], 95)),
            "throughput_per_s": len(val) / statistics.median(passes[name]),
            "file_mb": sizes[name] / 1e6,
            "accuracy": float((predicted == labels).mean()),
            "agreement_with_fp32": float((predicted == (reference >= 0)).mean()),
            "max_logit_difference": float(np.abs(logits[name] - reference).max()),
        }
    report(results)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def report(results: dict) -> None:
    rows = results["backends"]
    base = rows["PyTorch fp32 eager"]
    print(f"{results['reviews']} IMDB validation reviews (mean {results['mean_tokens']:.0f} tokens), "
          f"{results['machine']}")
    print("| backend | p50 ms (b=1) | p95 ms (b=1) | reviews/s (b=256) | x fp32 | file MB | accuracy | agreement "
          "| max |dlogit| |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['latency_p50_ms']:.2f} | {r['latency_p95_ms']:.2f} | {r['throughput_per_s']:.0f} | "
              f"{r['throughput_per_s'] / base['throughput_per_s']:.2f} | {r['file_mb']:.2f} | {r['accuracy']:.4f} | "
              f"{r['agreement_with_fp32']:.4f} | {r['max_logit_difference']:.1e} |")
    for name in ("PyTorch int8 dynamic", "ONNX Runtime fp32", "ONNX Runtime int8 dynamic"):
        r = rows[name]
        ratio = r['throughput_per_s'] / base['throughput_per_s']
        print(f"ratio {name} / fp32 eager throughput at batch 256: {ratio:.2f}x, "
              f"accuracy {100 * (r['accuracy'] - base['accuracy']):+.2f} points")


if __name__ == "__main__":
    main()
