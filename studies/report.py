"""Writing a study's outputs: atomic files, markdown tables, config.json, PNG plots.

Every file is written to a temporary name in the same folder and moved into place with
`os.replace` (atomic on POSIX and Windows), so a reader — or a rerun after a crash — sees
either the old file or the new one, never half of one.

A study's output folder holds

| file | what |
|---|---|
| ``results.csv`` | every row of every cell, in cell order; deterministic (a rerun or a torchrun gives the same bytes) |
| ``timings.csv`` | wall-clock columns (``*wall_s``), when the study measures time; not reproducible by nature |
| ``table.md`` | the study's summary table (and notes), also printed by the CLI |
| ``config.json`` | the config, seed, package versions, git revision, command line |
| ``*.png`` | the plots (matplotlib, Agg, no display needed) |

Plots use `matplotlib.figure.Figure` directly (no pyplot global state), so they work in
threads and on machines without a display.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Summary",
    "atomic_write_text",
    "atomic_write_bytes",
    "write_csv",
    "markdown_table",
    "format_number",
    "environment",
    "git_revision",
    "write_config",
    "new_figure",
    "save_figure",
    "loglog_axes",
    "plot_fitted",
]

PACKAGES = ("odeflow", "torch", "numpy", "scipy", "pandas", "matplotlib", "torchdiffeq", "diffusers")


@dataclass
class Summary:
    """What a study's ``report`` returns: the summary ``table`` (printed and saved as table.md),
    ``notes`` (markdown paragraphs written under the table), the ``plots`` it wrote, an optional
    ``title`` and the significant ``digits`` of the table's numbers."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    title: str = ""
    digits: int = 3


# ----------------------------------------------------------------------------------------------
# atomic files
# ----------------------------------------------------------------------------------------------
def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_csv(path: str | os.PathLike[str], df: pd.DataFrame) -> Path:
    """Write a DataFrame as CSV atomically; floats keep full precision (``repr``), so it round-trips."""
    return atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
def format_number(value: Any, digits: int = 3) -> str:
    """A compact cell: integers as is, floats with ``digits`` significant digits, NaN as ``–``."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v == 0.0:
            return "0"
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        if 1e-3 <= abs(v) < 1e5:
            return f"{v:.{digits}g}"
        return f"{v:.{max(digits - 1, 1)}e}"
    return str(value)


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table of ``df`` (numbers right-aligned, ``digits`` significant)."""
    if df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |"]
    lines.append("|" + "|".join("---:" if num else "---" for num in numeric) + "|")
    for row in df.itertuples(index=False):
        cells = [format_number(v, digits).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# provenance
# ----------------------------------------------------------------------------------------------
def git_revision(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The git commit of the working tree (with ``-dirty`` when it has changes), or None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the packages that shape the numbers."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_config(out: str | os.PathLike[str], study: str, config: Any, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json``: study name, config, seed, environment, git revision, time, command."""
    cfg = _jsonable(config)
    payload = {
        "study": study,
        "config": cfg,
        "seed": cfg.get("seed") if isinstance(cfg, dict) else None,
        "git_revision": git_revision(),
        "environment": environment(),
        "command": sys.argv,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        payload.update(_jsonable(extra))
    return atomic_write_text(Path(out) / "config.json", json.dumps(payload, indent=2, sort_keys=False) + "\n")


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 4.0), **kw: Any) -> tuple[Any, Any]:
    """A matplotlib ``Figure`` (Agg canvas, no pyplot) and its axes array (squeezed like pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (matplotlib is slow to import)
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, **kw)
    return fig, axes


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def loglog_axes(ax: Any, xlabel: str, ylabel: str, title: str = "") -> None:
    """Log–log axes with labels, a light grid and a title."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)


def plot_fitted(
    ax: Any,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    label: str,
    *,
    slope: float | None = None,
    stderr: float | None = None,
    used: Iterable[bool] | None = None,
    marker: str = "o",
    color: Any = None,
) -> None:
    """One error curve on log–log axes; the fitted slope (± standard error) goes into the legend.

    Points that entered the fit (``used``) are filled, the others hollow.
    """
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    keep = np.isfinite(ya) & (ya > 0)
    if slope is not None and math.isfinite(slope):
        err = f" ± {stderr:.2f}" if stderr is not None and math.isfinite(stderr) else ""
        label = f"{label} (slope {slope:.2f}{err})"
    (line,) = ax.plot(xa[keep], ya[keep], "-", label=label, color=color, alpha=0.8)
    mask = np.asarray(list(used), dtype=bool)[order] if used is not None else np.ones_like(keep)
    c = line.get_color()
    ax.plot(xa[keep & mask], ya[keep & mask], marker, color=c, ms=4, ls="none")
    ax.plot(xa[keep & ~mask], ya[keep & ~mask], marker, color=c, ms=4, ls="none", mfc="none")
