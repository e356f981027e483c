"""Regenerate the TensorBoard screenshots of docs/dynamics.md: what TensorBoard shows, not a redraw. Not part of CI.

    python docs/screenshots.py [--imdb PATH] [--logdir DIR] [--skip-training] [--output docs/images]

1. Trains the showcase (docs/dynamics.md's first pair of commands: the memory task at length 50, a vanilla RNN
   against an LSTM with keep_gate_bias 3), a user's own model (docs/examples/own_model.py) and, with ``--imdb``
   (an aclImdb folder, a parquet or CSV file, or ``hf``), the IMDB pair (the same two cells on 200-word reviews),
   each into its own folder under ``--logdir``.
2. Starts TensorBoard on 127.0.0.1, opens its Custom Scalars, Time Series, Images, Text and HParams pages in
   headless Chromium, writes one PNG per view to ``--output``, and stops TensorBoard.

Docs-only dependencies (not in requirements.txt): Chromium from Debian (``apt-get install chromium``) and PyPI's
``playwright`` (``pip install playwright``), which drives that Chromium through ``executable_path`` (it cannot
download its own browser here). Look at every picture before committing it.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOWCASE = ["--config", "configs/memory_task.yaml", "--config", "configs/dynamics.yaml", "--data.seq_length", "50",
            "--data.n_train", "12800", "--data.n_val", "500", "--trainer.val_check_interval", "1.0"]
SHOWCASE_CELLS = [["--model.cell", "rnn"], ["--model.cell", "lstm", "--model.keep_gate_bias", "3"]]
IMDB = ["--config", "configs/imdb_lstm.yaml", "--config", "configs/dynamics.yaml", "--model.pooling", "last",
        "--data.max_len", "200", "--data.limit", "5000", "--trainer.max_epochs", "2"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def train(logdir: Path, imdb: str | None) -> None:
    """The runs the pictures show, each pair into one root so that TensorBoard lists them side by side."""
    for extra in SHOWCASE_CELLS:
        run([sys.executable, "train.py", "fit", *SHOWCASE, *extra, *QUIET,
             "--trainer.default_root_dir", str(logdir / "showcase")])
    run([sys.executable, "docs/examples/own_model.py", "--root", str(logdir / "own_model")])
    if imdb:
        for extra in SHOWCASE_CELLS:
            run([sys.executable, "train.py", "fit", *IMDB, *extra, "--data.source", imdb, *QUIET,
                 "--trainer.default_root_dir", str(logdir / "imdb")])


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"  {time.perf_counter() - started:.0f} s", flush=True)


class TensorBoard:
    """``tensorboard --logdir DIR`` on 127.0.0.1 and a free port, for the duration of a ``with`` block."""

    def __init__(self, logdir: Path):
        self.logdir = logdir

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(self.logdir), "--host", "127.0.0.1",
             "--port", str(port), "--reload_interval", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/data/runs", timeout=1)
                return url
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("TensorBoard did not start within a minute")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def capture(url: str, output: Path, shots: list[tuple[str, str, dict]]) -> None:
    """``(file name, page, options)`` -> PNGs: the page at ``url + page`` after TensorBoard has drawn it.

    options: ``viewport`` (width, height), ``steps`` done before the picture: ``("click", text)`` clicks the element
    showing that text, ``("filter", regex)`` types into the page's tag filter.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for name, page_path, options in shots:
            width, height = options.get("viewport", (1400, 900))
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url + page_path)
            page.wait_for_load_state("networkidle")
            time.sleep(4.0)  # charts animate in, and images load after the data
            for action, value in options.get("steps", []):
                if action == "click":
                    page.get_by_text(value, exact=True).first.click()
                elif action == "filter":
                    page.locator("tf-tag-filterer input").first.fill(value)
                page.wait_for_load_state("networkidle")
                time.sleep(2.0)
            page.screenshot(path=str(output / name))
            shrink(output / name)
            print("wrote", output / name, flush=True)
            page.close()
        browser.close()


def shrink(path: Path) -> None:
    """Rewrite a screenshot as a 256-colour palette PNG: TensorBoard's pages have few colours, and the file is
    about 2.5x smaller for the same look."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


ACTUAL_SIZE = ("click", "Show actual image size")
SHOTS = {
    "showcase": [
        ("dynamics_showcase_custom_scalars.png", "/#custom_scalars", {"viewport": (1400, 960)}),
        ("dynamics_showcase_text.png", "/#text", {"viewport": (1400, 640)}),
        ("dynamics_showcase_gradflow_images.png", "/#images",
         {"viewport": (1560, 1050), "steps": [ACTUAL_SIZE, ("filter", "gradflow")]}),
        ("dynamics_showcase_hidden_images.png", "/#images",
         {"viewport": (1560, 1090), "steps": [ACTUAL_SIZE, ("filter", "hidden/example|gates")]}),
        ("dynamics_showcase_time_series.png",
         "/?tagFilter=gradflow%2F.*_log10%7Chorizon_fraction%7Cgradnorm%2Ftotal&smoothing=0#timeseries",
         {"viewport": (1400, 1000), "steps": [("click", "Settings")]}),
        ("dynamics_showcase_hparams.png", "/#hparams", {"viewport": (2000, 330)}),
    ],
    "own_model": [
        ("dynamics_own_model_images.png", "/#images",
         {"viewport": (1300, 980), "steps": [ACTUAL_SIZE, ("filter", "gates|per_timestep")]}),
        ("dynamics_own_model_text.png", "/#text", {"viewport": (1400, 420)}),
    ],
    "imdb": [
        ("dynamics_imdb_custom_scalars.png", "/#custom_scalars", {"viewport": (1400, 960)}),
        ("dynamics_imdb_gradflow_images.png", "/#images",
         {"viewport": (1560, 1050), "steps": [ACTUAL_SIZE, ("filter", "gradflow")]}),
    ],
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", type=Path, default=ROOT / "lightning_logs" / "docs_screenshots")
    parser.add_argument("--imdb", help="IMDB source for the real-data pair (aclImdb folder, parquet/CSV file, hf)")
    parser.add_argument("--skip-training", action="store_true", help="capture the runs already under --logdir")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        sys.exit(f"error: {CHROMIUM} not found; install Debian's chromium (apt-get install chromium)")
    if not args.skip_training:
        train(args.logdir, args.imdb)
    args.output.mkdir(parents=True, exist_ok=True)
    for group, shots in SHOTS.items():
        folder = args.logdir / group / "lightning_logs"
        if folder.exists():
            with TensorBoard(folder) as url:
                capture(url, args.output, shots)


if __name__ == "__main__":
    main()
