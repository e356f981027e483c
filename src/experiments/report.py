"""What the experiment reports share: the machine description and the markdown/JSON/PNG writers."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch


# -- the machine ----------------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """What the numbers were measured on: CPU model, cores, threads used, load, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": str(os.cpu_count()), "torch threads": str(torch.get_num_threads()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none used",
            "python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__,
            "os": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load average at start (1 min)"] = f"{os.getloadavg()[0]:.1f}"
    return info


QUICK_NOTE = "**Quick variant (`--quick`): a pipeline check with a tiny budget; the numbers mean nothing.**\n\n"


# -- writing --------------------------------------------------------------------------------------------------
def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.{max(digits - 1, 1)}e}"
        return f"{value:.{digits}f}"
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table; floats get ``fmt``; a ``|`` inside a cell is escaped so it does not split the cell."""
    def cell(v) -> str:
        return (v if isinstance(v, str) else fmt(v)).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def settings_table(settings: dict, info: dict[str, str], wall_s: float) -> str:
    rows = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in settings.items()]
    rows += [[f"machine: {k}", v] for k, v in info.items()]
    rows.append(["wall time of this command", f"{wall_s:.0f} s ({wall_s / 60:.1f} min)"])
    return table(["setting", "value"], rows)


def save_figure(figure, path: Path) -> Path:
    """Save a ``matplotlib.figure.Figure`` (built without pyplot, so no display or global backend) as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path


def new_figure(width: float = 6.4, height: float = 4.2):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def write_report(output: Path, title: str, body: Sequence[str], results: dict) -> Path:
    """``report.md`` (title + sections) and ``results.json`` (the measured numbers, NaN as null) in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(_plain(results), indent=1, sort_keys=True) + "\n")
    path = output / "report.md"
    path.write_text(f"# {title}\n\n" + "\n\n".join(s.strip() for s in body) + "\n")
    return path


def _plain(value):
    """Numbers and containers as JSON-ready plain data (NaN -> None, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std of the finite values (NaN if none)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    return (float(v.mean()), float(v.std())) if v.size else (float("nan"), float("nan"))

