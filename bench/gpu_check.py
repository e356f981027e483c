"""The whole GPU check in one command: the GPU tests and every GPU figure, in one summary table.

    python bench/gpu_check.py --imdb train.parquet --poems poems.jsonl.gz --glove glove.txt.gz [--out DIR]
    python bench/gpu_check.py --smoke [--out DIR]      # any machine: tiny generated data, every step, ~1 min on CPU
    python bench/gpu_check.py --prepare --imdb ... --poems ... --glove ...   # here, before a device call

Steps, in this order, each in a process of its own with a time budget (a step that fails or outlasts its budget is
a row of the table with its reason, and the check goes on):

    gpu_tests           python -m pytest -m gpu tests/gpu (no CUDA: every test skips)
    imdb_fp32           bench/imdb_throughput.py: ours vs the packed reference, one epoch of the IMDB split
    imdb_bf16           the same, ours in bf16-mixed
    imdb_bf16_b256      the same, ours in bf16-mixed with batches of 256 (lr 0.006)
    imdb_time_to_87     train.py fit --config configs/imdb_fast.yaml: seconds of training to val/acc >= 0.87
    callback_overhead   bench/callback_overhead.py: the dynamics callbacks' share of an epoch
    autoencoder_speed   bench/autoencoder_speed.py on the whole poems corpus (--ae_batches batches an epoch)
    char_lm_throughput  bench/char_lm_throughput.py

Prints the table and writes it to DIR/gpu_check.json and DIR/gpu_check.md (DIR: --out, else $OUT, the device
tool's output folder, else runs/gpu_check), with the pytest report DIR/gpu_tests.xml. The budgets add up to more
than --budget (480 s): a step gets what its own budget and the time left allow. A step whose data was not given is
skipped. Exit status: 0 when no step failed or ran out of time, 1 otherwise, 2 for a mistake in the options.

Processes: each step is a fork of this one after torch, Lightning and the benches are imported (a fresh interpreter
per step cost ~4 s of imports on the CPU box, most of the smoke run); the parent never initialises CUDA (it asks
NVML whether there is a GPU), so every child starts CUDA for itself. ``--start spawn`` starts a fresh interpreter
per step instead, should CUDA refuse to start in a fork on some machine.

On the device machine (docs/benchmarks.md, "GPU workstation"): ``--prepare`` copies the data into .gpu_check/data/
and downloads the wheels the device image lacks (jsonargparse for train.py's CLI, captum for src.explain, and their
missing requirements) into .gpu_check/wheels/, then prints the one device call that carries .gpu_check and runs
the check; there ``--wheels .gpu_check/wheels`` installs them before anything else.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

# Whether there is a GPU is asked of NVML, which leaves CUDA uninitialised in this process: its forks start it.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

from src.utils.errors import UserInputError, exit_on_user_error  # noqa: E402

# What the device image lacks (KINDS.md lists what it has): module -> distribution, and the distributions' own
# requirements it lacks too. ``datasets`` is needed only for --data.source hf, which the check does not use.
DEVICE_WHEELS = {"jsonargparse": "jsonargparse", "docstring_parser": "docstring-parser",
                 "typeshed_client": "typeshed-client", "captum": "captum"}
PRELOADED_BENCHES = ("imdb_throughput", "callback_overhead", "autoencoder_speed", "char_lm_throughput")
PREPARED = ROOT / ".gpu_check"  # ignored by git; the device call carries it
TOTAL_BUDGET_S = 480


# -- the options and what the steps share ------------------------------------------------------------------------
@dataclass
class Context:
    """What every step reads: where and on what it runs."""

    smoke: bool
    device: str  # "cuda" or "cpu"
    out: Path
    work: Path  # scratch folder of this check (tiny data, logs of the fits)
    cache: Path  # the IMDB encoding cache shared by the IMDB steps
    imdb: Optional[str] = None
    poems: Optional[str] = None
    glove: Optional[str] = None
    ae_batches: int = 200
    tta_precision: str = "bf16-mixed"
    start: str = "fork"  # how a step's process starts: multiprocessing's "fork" or "spawn"


@dataclass
class Step:
    name: str
    what: str
    budget_s: float  # the most it may take (sized for one GPU; the smoke steps take seconds)
    run: Callable[[Context], dict]
    summary: Callable[[dict], str]
    needs: tuple[str, ...] = ()  # Context fields that must be set (data paths), else the step is skipped


@dataclass
class Outcome:
    name: str
    what: str
    status: str  # ok | failed | timeout | skipped
    seconds: float = 0.0
    budget_s: float = 0.0
    figures: dict = field(default_factory=dict)
    summary: str = ""
    reason: str = ""


# -- the steps ------------------------------------------------------------------------------------------------------
def gpu_tests(ctx: Context) -> dict:
    """``pytest -m gpu tests/gpu`` in a fresh interpreter (pytest collects and imports on its own)."""
    report = ctx.out / "gpu_tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", "--junitxml",
               str(report), "tests/gpu"]
    print("$", " ".join(command), flush=True)
    code = subprocess.run(command, cwd=ROOT).returncode
    figures = junit_counts(report)
    if code != 0 or figures["failed"] or figures["errors"]:
        broken = ", ".join(figures["failed_tests"][:3]) + (" ..." if len(figures["failed_tests"]) > 3 else "")
        raise StepFailed(f"pytest exit {code}: {figures['failed']} failed, {figures['errors']} errors"
                         + (f" ({broken})" if broken else ""))
    return figures


def junit_counts(report: Path) -> dict:
    """pytest's JUnit XML -> passed/failed/errors/skipped counts, failing test ids and the distinct skip reasons."""
    if not report.is_file():
        raise StepFailed(f"pytest wrote no report {report.name}")
    cases = ElementTree.parse(report).getroot().iter("testcase")
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failed_tests": [], "skip_reasons": []}
    for case in cases:
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), None)
        name = f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
        if outcome == "skipped":
            counts["skipped"] += 1
            reason = next(child for child in case if child.tag == "skipped").get("message", "")
            if reason not in counts["skip_reasons"]:
                counts["skip_reasons"].append(reason)
        elif outcome in ("failure", "error"):
            counts["failed" if outcome == "failure" else "errors"] += 1
            counts["failed_tests"].append(name)
        else:
            counts["passed"] += 1
    return counts


def summarize_tests(f: dict) -> str:
    text = f"{f['passed']} passed, {f['skipped']} skipped, {f['failed']} failed, {f['errors']} errors"
    return text + (f" (skipped: {f['skip_reasons'][0][:80]})" if f["skipped"] and not f["passed"] else "")


def imdb_throughput(precision: str, batch_size: Optional[int] = None, lr: Optional[float] = None):
    def run(ctx: Context) -> dict:
        import imdb_throughput as bench

        if ctx.smoke:
            size = ["--quick", "--limit", "150", "--eval_limit", "60", "--max_len", "12"]
        else:  # the full split (max_len 400), one epoch: both pipelines' throughput and accuracy in < 1 min
            size = ["--epochs", "1"]
        options = ["--batch_size", str(batch_size)] if batch_size else []
        options += ["--lr", str(lr)] if lr else []
        return bench.main(["--data", ctx.imdb, *size, "--device", ctx.device, "--precision", precision,
                           "--cache_dir", str(ctx.cache), *options])
    return run


def summarize_imdb(f: dict) -> str:
    s, ours, ref = f["setup"], f["ours"], f["ref"]
    return (f"ours {ours['samples_per_s']:,.0f} samples/s vs packed reference {ref['samples_per_s']:,.0f}: "
            f"**{f['ratio_samples_per_s']:.2f}x**; held-out acc {ours['acc']:.3f} vs {ref['acc']:.3f} "
            f"({s['train_reviews']} reviews x {s['epochs']} epoch, max_len {s['max_len']}, batch {s['batch_size']}, "
            f"ours {s['precision']})")


def imdb_time_to_accuracy(ctx: Context, target: float = 0.87) -> dict:
    """``train.py fit --config configs/imdb_fast.yaml`` (+ a clock): seconds from the start of training to the first
    validation with val/acc >= target, and from the start of this step (reading and encoding the reviews too)."""
    import pytorch_lightning as pl
    import torch

    from train import cli_main

    class AccuracyClock(pl.Callback):
        def __init__(self):
            self.start, self.points = None, []

        def on_train_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking or "val/acc" not in trainer.callback_metrics:
                return
            acc = float(trainer.callback_metrics["val/acc"])
            self.points.append({"epoch": trainer.current_epoch, "step": trainer.global_step,
                                "train_s": time.perf_counter() - self.start, "val_acc": acc})
            if acc >= target:
                trainer.should_stop = True  # the figure is the time to the target, not the rest of the run

    warnings.filterwarnings("ignore", "LightningCLI's args parameter")  # args here, this script's own in sys.argv
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=ctx.work) as logs:
        args = ["--config", "configs/imdb_fast.yaml", "--data.source", ctx.imdb, "--data.cache_dir", str(ctx.cache),
                "--trainer.default_root_dir", logs, "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false"]
        if ctx.smoke:
            torch.set_num_threads(1)
            args += ["--data.max_len", "12", "--data.batch_size", "16", "--data.test_fraction", "0.2",
                     "--model.embedding_dim", "16", "--model.hidden_size", "16", "--trainer.max_epochs", "3",
                     "--trainer.accelerator", "cpu", "--trainer.precision", "32-true"]
        else:  # 20,250 train / 2,250 validation reviews, as docs/benchmarks.md's full-split runs
            args += ["--data.test_fraction", "0.1", "--trainer.max_epochs", "4", "--trainer.accelerator",
                     accelerator(ctx), "--trainer.devices", "1", "--trainer.precision", ctx.tta_precision]
        cli = cli_main(args, run=False)
        clock = AccuracyClock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    reached = next((p for p in clock.points if p["val_acc"] >= target), None)
    return {"target": target, "precision": cli.trainer.precision, "validations": clock.points,
            "train_s_to_target": reached and reached["train_s"],
            "wall_s_to_target": reached and (reached["train_s"] + clock.start - began),
            "train_reviews": len(cli.datamodule.datasets["train"]), "val_reviews": len(cli.datamodule.datasets["val"])}


def accelerator(ctx: Context) -> str:
    return "gpu" if ctx.device == "cuda" else "cpu"


def summarize_time_to_accuracy(f: dict) -> str:
    trail = ", ".join(f"{p['val_acc']:.3f}@{p['train_s']:.1f}s" for p in f["validations"])
    if f["train_s_to_target"] is None:
        return f"val/acc {f['target']} **not reached** (val/acc@training s: {trail}; {f['precision']})"
    return (f"val/acc >= {f['target']} after **{f['train_s_to_target']:.1f} s** of training "
            f"({f['wall_s_to_target']:.1f} s with reading and encoding; val/acc@training s: {trail}; "
            f"{f['train_reviews']} train / {f['val_reviews']} val reviews, {f['precision']})")


def callback_overhead(ctx: Context) -> dict:
    import callback_overhead as bench

    if ctx.smoke:
        return bench.main(["--samples", "300", "--repeats", "1", "--epochs", "3", "--threads", "1"])
    return bench.main(["--accelerator", accelerator(ctx), "--repeats", "3", "--epochs", "4"])


def summarize_callbacks(f: dict) -> str:
    parts = [f"{name} **{(v['ratio'] - 1) * 100:+.1f}%** (in-hook {v['in_hook_share'] * 100:.1f}%)"
             for name, v in f.items() if isinstance(v, dict)]
    return f"epoch time with the callbacks: {'; '.join(parts)}; epoch without {f['epoch_off_ms']:.0f} ms"


def autoencoder_speed(ctx: Context) -> dict:
    import autoencoder_speed as bench

    if ctx.smoke:  # the embedded default's poems and GloVe rows
        return bench.main(["--poems", "32", "--epochs-scale", "0.05", "--max_batches", "2", "--threads", "1",
                           "--device", ctx.device])
    return bench.main(["--poems", "0", "--poems_path", ctx.poems, "--glove_path", ctx.glove, "--epochs-scale", "0.05",
                       "--max_batches", str(ctx.ae_batches), "--device", ctx.device])


def summarize_autoencoder(f: dict) -> str:
    runs = f["runs"]
    reference = next(iter(runs.values()))
    speed = ", ".join(f"{name.removeprefix('ours ')} {r['speedup']:.1f}x (cos {r['cosine']:.3f})"
                      for name, r in runs.items() if name.startswith("ours"))
    return (f"epoch@50 words vs the notebook loop ({reference['epoch_s'] * 1000:.1f} ms, cos "
            f"{reference['cosine']:.3f}): {speed}")


def char_lm_throughput(ctx: Context) -> dict:
    import char_lm_throughput as bench

    if ctx.smoke:
        return bench.main(["--device", ctx.device, "--steps", "2", "--hidden_size", "32", "--batch_size", "8",
                           "--window_len", "32", "--threads", "1"])
    return bench.main(["--device", ctx.device, "--steps", "100"])


def summarize_char_lm(f: dict) -> str:
    return (f"ours {f['ours_chars_per_s']:,.0f} chars/s vs reference {f['reference_chars_per_s']:,.0f}: "
            f"**{f['ratio']:.1f}x** ({f['model']})")


STEPS = [
    Step("gpu_tests", "pytest -m gpu tests/gpu", 150, gpu_tests, summarize_tests),
    Step("imdb_fp32", "IMDB throughput vs packed reference, fp32", 75, imdb_throughput("32-true"), summarize_imdb,
         ("imdb",)),
    Step("imdb_bf16", "IMDB throughput vs packed reference, ours bf16-mixed", 75, imdb_throughput("bf16-mixed"),
         summarize_imdb, ("imdb",)),
    Step("imdb_bf16_b256", "IMDB throughput, ours bf16-mixed, batch 256", 75,
         imdb_throughput("bf16-mixed", 256, 0.006), summarize_imdb, ("imdb",)),
    Step("imdb_time_to_87", "IMDB time to 87% validation accuracy (imdb_fast.yaml)", 90, imdb_time_to_accuracy,
         summarize_time_to_accuracy, ("imdb",)),
    Step("callback_overhead", "dynamics callbacks' overhead (default reviews run)", 90, callback_overhead,
         summarize_callbacks),
    Step("autoencoder_speed", "autoencoder epoch time, full poems corpus", 100, autoencoder_speed,
         summarize_autoencoder, ("poems", "glove")),
    Step("char_lm_throughput", "char-LM training throughput", 45, char_lm_throughput, summarize_char_lm),
]


# -- running a step in a process of its own -------------------------------------------------------------------------
class StepFailed(Exception):
    """A step that ran but did not pass (failing tests): its message is the table's reason."""


def one_line(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"exited with status {error.code} (its error line is in the log above)"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:300] if not isinstance(error, StepFailed) else text[:300]


def run_step(step: Step, ctx: Context, budget_s: float) -> Outcome:
    """Start the step in a process of its own (``ctx.start``: a fork of this one, or a fresh interpreter), which
    runs it in a session of its own, so that the parent can end it and anything it started, and writes its
    figures or its error as JSON; the parent waits at most ``budget_s``."""
    result = ctx.work / f"{step.name}.result.json"
    result.unlink(missing_ok=True)
    outcome = Outcome(step.name, step.what, "failed", budget_s=budget_s)
    sys.stdout.flush()
    sys.stderr.flush()
    began = time.monotonic()
    # A fork runs the Step itself (closures too); a fresh interpreter finds it again by name.
    child = multiprocessing.get_context(ctx.start).Process(
        target=step_in_child, args=(step if ctx.start == "fork" else step.name, ctx, result), daemon=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a multi-threaded process: see the docstring
        child.start()
    child.join(budget_s)
    outcome.seconds = time.monotonic() - began
    if child.exitcode is None:
        end_session(child.pid)
        child.join()
        outcome.status, outcome.reason = "timeout", f"stopped after its budget of {budget_s:.0f} s"
        return outcome
    end_session(child.pid)  # what the step left running (a data loader's workers, a subprocess)
    if not result.is_file():
        outcome.reason = f"its process died without a result (exit code {child.exitcode})"
        return outcome
    payload = json.loads(result.read_text())
    outcome.status, outcome.reason = payload["status"], payload.get("reason", "")
    outcome.figures = payload.get("figures") or {}
    if outcome.status == "ok":
        try:
            outcome.summary = step.summary(outcome.figures)
        except Exception as error:  # a bench that changed what it returns: keep the figures, say so
            outcome.summary = f"(no summary: {one_line(error)})"
    return outcome


def step_in_child(step: "Step | str", ctx: Context, result: Path) -> None:
    os.setsid()
    step = step if isinstance(step, Step) else next(s for s in (ENVIRONMENT, *STEPS) if s.name == step)
    code = 1
    try:
        payload, code = {"status": "ok", "figures": step.run(ctx)}, 0
    except BaseException as error:  # noqa: B036 - SystemExit from a bench's own error too: a row, not a crash
        traceback.print_exc()
        payload = {"status": "failed", "reason": one_line(error)}
    result.write_text(json.dumps(payload, default=plain))
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def end_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def plain(value):
    """JSON for what the benches return: numpy and torch scalars as numbers, anything else as text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


# -- the table -------------------------------------------------------------------------------------------------------
def environment(ctx: Context) -> dict:
    """Runs in a child (CUDA initialised there): what the figures were measured on."""
    import pytorch_lightning as pl
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__,
            "cpu_count": os.cpu_count(), "device": ctx.device}
    if ctx.device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                    bf16=torch.cuda.is_bf16_supported())
    return info


ENVIRONMENT = Step("environment", "what the figures were measured on", 120, environment, str)


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head.stdout.strip() + ("+changes" if dirty else "") if head.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def markdown(meta: dict, outcomes: list[Outcome]) -> str:
    machine = meta["environment"]
    where = (f"{machine.get('gpu')} ({machine.get('gpu_memory_gib')} GiB), CUDA {machine.get('cuda')}, cuDNN "
             f"{machine.get('cudnn')}" if machine.get("gpu") else f"CPU only ({machine.get('cpu_count')} cores)")
    lines = [f"## GPU check, {meta['date']}{' (--smoke: tiny data)' if meta['smoke'] else ''}", "",
             f"{where}; torch {machine.get('torch')}, Lightning {machine.get('lightning')}, Python "
             f"{machine.get('python')}; commit {meta['commit']}; {meta['seconds']:.0f} s in all.", "",
             f"Command: `{meta['command']}`", "",
             "| step | status | s (budget) | figures |", "|---|---|---|---|"]
    for o in outcomes:
        text = o.summary if o.status == "ok" else o.reason
        lines.append(f"| {o.name}: {o.what} | {o.status} | {o.seconds:.0f} ({o.budget_s:.0f}) | "
                     f"{text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_summary(out: Path, meta: dict, outcomes: list[Outcome]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(meta, outcomes)
    (out / "gpu_check.md").write_text(table, encoding="utf-8")
    (out / "gpu_check.json").write_text(json.dumps({"meta": meta, "steps": [o.__dict__ for o in outcomes]},
                                                   indent=1, default=plain), encoding="utf-8")
    return table


# -- smoke data, wheels, the device call ------------------------------------------------------------------------------
def tiny_reviews(path: Path, n: int = 240, seed: int = 6) -> str:
    """A CSV of ``n`` short reviews whose label two of their words give away (written without pandas or pyarrow,
    whose thread pools the steps' forks would inherit)."""
    rng = random.Random(seed)
    filler = ["plot", "film", "the", "a", "actor", "scene", "music", "ending"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n):
            label = rng.randrange(2)
            words = rng.choices(["good", "great"] if label else ["bad", "awful"], k=2) + rng.choices(filler, k=8)
            rng.shuffle(words)
            writer.writerow([" ".join(words), label])
    return str(path)


def install_wheels(wheels: Path, work: Path) -> None:
    """Install the carried wheels of the modules this interpreter lacks into ``work/site``, for this process and
    the processes it starts (the device image has no jsonargparse or captum; README of the device tool)."""
    missing = [module for module in DEVICE_WHEELS if importlib.util.find_spec(module) is None]
    if not missing:
        print(f"--wheels: {', '.join(DEVICE_WHEELS)} already importable; nothing installed", flush=True)
        return
    files = sorted(wheels.glob("*.whl"))
    if not files:
        raise UserInputError(f"--wheels {wheels} holds no .whl files, and {', '.join(missing)} cannot be imported; "
                             "run python bench/gpu_check.py --prepare ... here first")
    site = work / "site"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, files)]
    if subprocess.run(command).returncode != 0:
        raise UserInputError(f"pip could not install the wheels of {wheels}; run --prepare again here")
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    importlib.invalidate_caches()
    still = [module for module in DEVICE_WHEELS if importlib.util.find_spec(module) is None]
    if still:
        raise UserInputError(f"after installing {wheels}: {', '.join(still)} still cannot be imported")
    print(f"--wheels: installed {len(files)} wheels into {site}", flush=True)


def prepare(args) -> None:
    """Copy the data into .gpu_check/data and download the wheels into .gpu_check/wheels; print the device call."""
    data = PREPARED / "data"
    data.mkdir(parents=True, exist_ok=True)
    carried = {}
    for option in ("imdb", "poems", "glove"):
        source = getattr(args, option)
        if source is None:
            raise UserInputError(f"--prepare needs --{option} (the device machine has no data of its own)")
        target = data / Path(source).name
        if not target.is_file() or target.stat().st_size != Path(source).stat().st_size:
            shutil.copyfile(source, target)
        carried[option] = target.relative_to(ROOT).as_posix()
    wheels = PREPARED / "wheels"
    wheels.mkdir(exist_ok=True)
    if not args.no_download:
        pins = [f"{dist}=={importlib.metadata.version(dist)}" for dist in DEVICE_WHEELS.values()]
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                   "--platform", "manylinux2014_x86_64", "-d", str(wheels), *pins]
        print("$", " ".join(command), flush=True)
        if subprocess.run(command).returncode != 0:
            raise UserInputError("pip download failed (the package registry must be reachable from here)")
    size = sum(f.stat().st_size for f in PREPARED.rglob("*") if f.is_file()) / 2**20
    command = device_command(carried)
    print(f"\n{PREPARED.relative_to(ROOT)}/ holds {size:.1f} MiB (the device call carries at most 64 MiB with the "
          f"working tree). The device call (run tool):\n  command: {command}\n  carry: [\"{PREPARED.name}\"]\n"
          "  timeout_s: 600")


def device_command(data: dict) -> str:
    return ("set -o pipefail; PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --wheels .gpu_check/wheels "
            f"--imdb {data['imdb']} --poems {data['poems']} --glove {data['glove']} --out $OUT 2>&1 "
            "| tee $OUT/gpu_check.log")


# -- the command -----------------------------------------------------------------------------------------------------
def parse(argv: Optional[list[str]]):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny generated data on whatever device is here")
    parser.add_argument("--imdb", help="IMDB reviews: parquet/CSV/aclImdb (e.g. the shared train.parquet)")
    parser.add_argument("--poems", help="the poems corpus (.jsonl.gz) for the autoencoder bench")
    parser.add_argument("--glove", help="the GloVe file (.txt.gz) for the autoencoder bench")
    parser.add_argument("--out", help="folder for gpu_check.json/.md (default: $OUT, else runs/gpu_check)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto: cuda when there is a GPU; full size on CPU needs --device cpu")
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for all steps together")
    parser.add_argument("--only", help="comma-separated step names to run (default: all)")
    parser.add_argument("--ae_batches", type=int, default=200, help="autoencoder: batches timed per epoch")
    parser.add_argument("--tta_precision", default="bf16-mixed", help="precision of the time-to-accuracy run")
    parser.add_argument("--start", choices=["fork", "spawn"], default="fork",
                        help="how each step's process starts: fork (default: this process's imports are reused) or "
                             "spawn (a fresh interpreter per step, ~5 s more each; if CUDA fails to start in forks)")
    parser.add_argument("--wheels", help="install these wheels first where their modules are missing (device)")
    parser.add_argument("--prepare", action="store_true",
                        help="here: copy --imdb/--poems/--glove to .gpu_check/data, download the wheels, print the "
                             "device call")
    parser.add_argument("--no_download", action="store_true", help="with --prepare: copy the data only")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    with exit_on_user_error():
        for option in ("imdb", "poems", "glove"):
            value = getattr(args, option)
            if value is not None and not Path(value).expanduser().exists():
                raise UserInputError(f"--{option} {value} not found")
        if args.prepare:
            prepare(args)
            return 0
        return check(args)


def check(args) -> int:
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        return check_in(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_in(args, work: Path) -> int:
    began = time.monotonic()
    out = Path(args.out or os.environ.get("OUT") or ROOT / "runs" / "gpu_check").expanduser().resolve()
    if args.wheels:
        install_wheels(Path(args.wheels), work)
    import torch  # after --wheels; this process only asks NVML (see the docstring)

    has_gpu = torch.cuda.is_available()
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and has_gpu) else "cpu"
    if device == "cuda" and not has_gpu:
        raise UserInputError("--device cuda, but torch sees no CUDA device here; use --smoke or --device cpu")
    if device == "cpu" and not args.smoke and args.device != "cpu":
        raise UserInputError("no CUDA device here: the full check is sized for one GPU; use --smoke (tiny data) "
                             "or --device cpu (hours)")
    cache = work / "cache" if args.smoke else ROOT / ".cache" / "rnn_lab"  # the encoded IMDB split, reused
    ctx = Context(args.smoke, device, out, work, cache, args.imdb, args.poems, args.glove, args.ae_batches,
                  args.tta_precision, args.start)
    if args.smoke:
        ctx.imdb = ctx.imdb or tiny_reviews(work / "reviews.csv")
        ctx.poems, ctx.glove = ctx.poems or "embedded default", ctx.glove or "embedded default"
    wanted = STEPS if not args.only else [s for s in STEPS if s.name in args.only.split(",")]
    if args.only and len(wanted) != len(args.only.split(",")):
        raise UserInputError(f"--only {args.only}: the steps are {', '.join(s.name for s in STEPS)}")
    out.mkdir(parents=True, exist_ok=True)
    # Imported once here, so that every step's fork starts with them (CUDA stays uninitialised).
    for module in ("pytorch_lightning", "train", *PRELOADED_BENCHES):
        importlib.import_module(module)

    probe = run_step(ENVIRONMENT, ctx, 120)
    print(f"gpu_check: {'smoke, ' if args.smoke else ''}device {device}, {len(wanted)} steps, budget "
          f"{args.budget:.0f} s; {probe.figures or probe.reason}", flush=True)
    outcomes = []
    for step in wanted:
        left = args.budget - (time.monotonic() - began)
        absent = [need for need in step.needs if getattr(ctx, need) is None]
        if absent:
            outcomes.append(Outcome(step.name, step.what, "skipped", reason="needs " + ", ".join(
                f"--{need}" for need in absent)))
        elif left < 10:
            outcomes.append(Outcome(step.name, step.what, "skipped", reason="no time left of --budget"))
        else:
            budget = min(step.budget_s, left)
            print(f"\n== {step.name}: {step.what} (budget {budget:.0f} s)", flush=True)
            outcomes.append(run_step(step, ctx, budget))
            o = outcomes[-1]
            print(f"== {step.name}: {o.status} in {o.seconds:.1f} s: {o.summary or o.reason}", flush=True)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "smoke": args.smoke,
            "commit": git_commit(), "environment": probe.figures, "seconds": time.monotonic() - began,
            "command": " ".join(["python bench/gpu_check.py", *args.argv]),
            "data": {"imdb": ctx.imdb, "poems": ctx.poems, "glove": ctx.glove}}
    print("\n" + write_summary(out, meta, outcomes), flush=True)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0 if all(o.status in ("ok", "skipped") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
