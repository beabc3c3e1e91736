"""The sweep runner: outputs, atomic resumable cells, determinism, torchrun sharding."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from odeflow.errors import InvalidInputError
from studies import runner
from studies.report import atomic_write_text, format_number, markdown_table

# A tiny study written to a file so that torchrun's child processes can import it too. It logs
# every computed cell to TOY_LOG, and raises KeyboardInterrupt at cell TOY_INTERRUPT_AT (a crash).
TOY_STUDY = '''
"""Toy study for the runner tests."""
from __future__ import annotations
import os
from dataclasses import dataclass
import torch
from odeflow.errors import InvalidInputError
from studies.report import Summary, new_figure, save_figure
from studies.runner import derive_seed

NAME = "toy"
TITLE = "Toy study"

@dataclass(frozen=True)
class Config:
    n_cells: int = 6
    scales: tuple[float, ...] = (1.0, 2.0)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.n_cells < 1:
            raise InvalidInputError(f"n_cells must be >= 1, got {self.n_cells}")

    @classmethod
    def quick(cls):
        return cls(n_cells=3)

def cells(config):
    return [{"index": i, "scale": s} for i in range(config.n_cells) for s in config.scales]

def run_cell(config, cell):
    if os.environ.get("TOY_INTERRUPT_AT") == f"{cell['index']}-{cell['scale']}":
        raise KeyboardInterrupt
    if os.environ.get("TOY_LOG"):
        with open(os.environ["TOY_LOG"], "a") as fh:
            fh.write(f"{cell['index']}-{cell['scale']}\\n")
    g = torch.Generator().manual_seed(derive_seed(config.seed, cell["index"]))
    x = cell["scale"] * torch.randn(20000, generator=g, dtype=torch.float32)
    return [
        {"stat": "mean", "value": x.mean(), "wall_s": 0.001 * cell["index"]},
        {"stat": "sumsq", "value": (x * x).sum(), "wall_s": 0.002},
    ]

def report(df, out, config):
    fig, ax = new_figure()
    ax.plot(df["index"], df["value"], "o")
    ax.set_xlabel("cell")
    ax.set_ylabel("value")
    path = save_figure(fig, out / "toy.png")
    table = df[df["stat"] == "mean"][["index", "scale", "value"]].reset_index(drop=True)
    return Summary(table=table, notes=["A toy note."], plots=[path])
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pkg = tmp_path / "toypkg"
    pkg.mkdir()
    (pkg / "toy_study.py").write_text(TOY_STUDY)
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setenv("TOY_LOG", str(tmp_path / "log.txt"))
    monkeypatch.delenv("TOY_INTERRUPT_AT", raising=False)
    sys.modules.pop("toy_study", None)
    mod = importlib.import_module("toy_study")
    yield mod
    sys.modules.pop("toy_study", None)


def _log(tmp_path: Path) -> list[str]:
    path = tmp_path / "log.txt"
    return path.read_text().split() if path.exists() else []


def test_outputs_and_row_order(toy, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.run_study(toy, toy.Config(), out, progress=False)
    assert {p.name for p in out.iterdir()} >= {"results.csv", "timings.csv", "table.md", "config.json", "toy.png"}
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == ["index", "scale", "stat", "value"]  # cell keys first; no timing columns
    assert len(df) == 6 * 2 * 2 and res.computed == 12 and res.reused == 0
    assert list(df["index"][::4]) == list(range(6))  # cell order
    timings = pd.read_csv(out / "timings.csv")
    assert "wall_s" in timings and len(timings) == len(df)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["study"] == "toy" and cfg["config"]["n_cells"] == 6 and cfg["seed"] == 0
    assert cfg["environment"]["packages"]["torch"] and "git_revision" in cfg
    table = (out / "table.md").read_text()
    assert table.startswith("# Toy study") and "A toy note." in table and "| index |" in table
    assert (out / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wall_s" in res.df  # the report sees the timings


def test_interrupt_and_resume(toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = runner.run_study(toy, toy.Config(), tmp_path / "ref", progress=False)
    (tmp_path / "log.txt").unlink()
    out = tmp_path / "out"
    monkeypatch.setenv("TOY_INTERRUPT_AT", "3-1.0")  # the 7th cell
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(toy, toy.Config(), out, progress=False)
    assert not (out / "results.csv").exists()  # nothing half written
    saved = list((out / ".cells").rglob("*.json"))
    assert len(saved) == 6 and not list((out / ".cells").rglob("*.tmp"))
    done_first = _log(tmp_path)
    assert len(done_first) == 6
    monkeypatch.delenv("TOY_INTERRUPT_AT")
    res = runner.run_study(toy, toy.Config(), out, progress=False)
    assert res.computed == 6 and res.reused == 6
    assert set(_log(tmp_path)[6:]).isdisjoint(done_first)  # finished cells were not recomputed
    assert (out / "results.csv").read_bytes() == (ref.out / "results.csv").read_bytes()


def test_corrupt_cell_is_recomputed_and_fresh_recomputes_all(toy, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = (runner.run_study(toy, toy.Config(n_cells=2), out, progress=False).out / "results.csv").read_bytes()
    cell_file = sorted((out / ".cells").rglob("*.json"))[0]
    cell_file.write_text('{"key": "trunc')  # e.g. a disk-full partial write
    res = runner.run_study(toy, toy.Config(n_cells=2), out, progress=False)
    assert (res.computed, res.reused) == (1, 3)
    assert (out / "results.csv").read_bytes() == first
    res = runner.run_study(toy, toy.Config(n_cells=2), out, progress=False, resume=False)
    assert (res.computed, res.reused) == (4, 0)


def test_changed_config_does_not_reuse_cells(toy, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner.run_study(toy, toy.Config(n_cells=2), out, progress=False)
    res = runner.run_study(toy, toy.Config(n_cells=2, seed=1), out, progress=False)
    assert res.reused == 0
    assert runner.config_hash("toy", toy.Config(seed=1)) != runner.config_hash("toy", toy.Config(seed=2))


def test_bad_study_definitions(toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError, match="n_cells"):
        toy.Config(n_cells=0)
    with pytest.raises(InvalidInputError, match="Config"):
        runner.run_study(toy, {"n_cells": 2}, tmp_path / "a", progress=False)
    monkeypatch.setattr(toy, "cells", lambda c: [{"a": 1}, {"a": 1}])
    with pytest.raises(ValueError, match="twice"):
        runner.run_study(toy, toy.Config(), tmp_path / "b", progress=False)
    monkeypatch.setattr(toy, "cells", lambda c: [{"a": 1}])
    monkeypatch.setattr(toy, "run_cell", lambda c, cell: [{"v": [1, 2]}])
    with pytest.raises(TypeError, match="JSON scalar"):
        runner.run_study(toy, toy.Config(), tmp_path / "c", progress=False)
    assert not (tmp_path / "b").exists()


def test_seeds_keys_and_tables() -> None:
    assert runner.derive_seed(0, "8gaussians") == runner.derive_seed(0, "8gaussians")
    assert runner.derive_seed(0, "8gaussians") != runner.derive_seed(1, "8gaussians")
    assert 0 <= runner.derive_seed(123, "x", 4) < 2**31
    k = runner.cell_key({"solver": "rk4", "steps": 8, "path": "a/b c"})
    assert k.startswith("rk4-8-a_b_c-") and "/" not in k
    assert runner.cell_key({"s": 1}) != runner.cell_key({"s": "1"})
    assert runner.is_timing_column("wall_s") and runner.is_timing_column("solve_wall_s")
    assert not runner.is_timing_column("steps")
    md = markdown_table(pd.DataFrame({"solver": ["rk4"], "order": [3.98765], "err": [1.5e-9], "n": [8]}))
    assert md.splitlines()[1] == "|---|---:|---:|---:|" and "| rk4 | 3.99 | 1.50e-09 | 8 |" in md
    assert format_number(float("nan")) == "–"


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


TORCHRUN_SCRIPT = """
import sys
sys.path.insert(0, {pkg!r})
import toy_study
from studies.runner import run_study
res = run_study(toy_study, toy_study.Config(), {out!r}, progress=False, threads=1)
print("RANK", res.rank, "WORLD", res.world, "COMPUTED", res.computed, "REUSED", res.reused)
"""


@pytest.mark.slow
def test_torchrun_two_ranks_give_the_same_csv(toy, tmp_path: Path) -> None:
    single = runner.run_study(toy, toy.Config(), tmp_path / "single", progress=False)
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(TORCHRUN_SCRIPT.format(pkg=str(tmp_path / "toypkg"), out=str(tmp_path / "dist"))))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["TOY_LOG"] = str(tmp_path / "dist_log.txt")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANK 0 WORLD 2 COMPUTED 12 REUSED 0" in proc.stdout  # totals on rank 0
    assert "RANK 1 WORLD 2 COMPUTED 6 REUSED 0" in proc.stdout  # its own half elsewhere
    assert (tmp_path / "dist" / "results.csv").read_bytes() == (single.out / "results.csv").read_bytes()
    assert len((tmp_path / "dist_log.txt").read_text().split()) == 12  # every cell ran exactly once
