"""The sweep runner: resumable, shardable, deterministic studies.

Writing a study
===============

A study is one module in ``studies/`` registered by name in `studies.registry.STUDIES`
(imported lazily, so ``odeflow list`` stays fast). The module defines:

``Config``
    a dataclass (``frozen=True`` recommended) of typed fields with defaults. It **must** have
    ``seed: int`` and ``device: str`` fields (the CLI's ``--seed``/``--device`` set them) and a
    classmethod ``quick()`` returning the ``--quick`` variant (well under a minute on 2 CPU
    cores). Validate values in ``__post_init__`` and raise `odeflow.errors.InvalidInputError`
    with a message that lists what is allowed — the CLI turns it into exit code 2 before anything
    is written. Field types the CLI can set with ``--set key=value``: ``int``, ``float``,
    ``str``, ``bool`` and ``tuple[int | float | str, ...]`` (comma-separated values).
``cells(config) -> list[dict]``
    the sweep: one small dict of JSON scalars (str, int, float, bool, None) per unit of work,
    e.g. ``{"problem": "8gaussians", "solver": "rk4", "steps": 16}``. Cells are the unit of
    resumption and of sharding; order matters (it is the row order of ``results.csv``).
``run_cell(config, cell) -> list[dict]``
    compute one cell and return its rows (dicts of JSON scalars; torch/numpy scalars are
    converted). The runner prepends the cell's own keys to each row, so rows need not repeat
    them. Must be deterministic given ``(config, cell)``: seed every random draw from
    ``config.seed`` (`derive_seed` helps), never from global state. Columns named ``wall_s`` or
    ending in ``_wall_s`` hold wall-clock measurements: they go to ``timings.csv``, not
    ``results.csv``, which stays byte-for-byte reproducible.
``report(df, out, config) -> Summary | DataFrame``
    make plots in ``out`` (use `studies.report.save_figure`) and return the summary table (a
    `studies.report.Summary` may add notes and list plots). ``df`` holds every row, timing
    columns included.

Optional: a ``plots: bool`` config field (``False`` skips the plots, e.g. in tests),
``validate(config)`` (checks that need registries, e.g. solver names), ``TITLE``
(one line) and ``CACHE_VERSION`` (bump it when a change of the code invalidates saved cells).
A module-level ``run(config=None, out=None, **kw)`` that calls `run_study` is customary.

Running
=======

``run_study(module_or_name, config, out)`` does, on every rank:

1. validate the config and the cells (unique keys, JSON-scalar values);
2. give rank ``r`` of ``W`` the cells ``i`` with ``i % W == r`` (``W = 1`` without torchrun);
3. for each of its cells, load ``out/.cells/<config-hash>/<cell-key>.json`` if present,
   otherwise run it (with ``torch`` pinned to ``threads`` threads, default 1, so reductions
   and therefore the results do not depend on the machine's core count) and save it atomically
   (temporary file + `os.replace`) — an interrupted run loses at most the cell in progress,
   and a rerun recomputes nothing that finished;
4. under ``torchrun`` (``WORLD_SIZE > 1``) the ranks' rows are gathered to rank 0 with
   ``torch.distributed.gather_object`` (gloo on CPU, nccl when the device is CUDA; the process
   group is created if the caller has not), so no shared file system is needed;
5. rank 0 merges the rows in cell order — the same ``results.csv`` as one process — and
   writes ``results.csv``, ``timings.csv``, ``table.md``, ``config.json`` and the study's plots.

The cache key of a cell is the hash of the study name, ``CACHE_VERSION``, the whole config and
the cell, so changing any config value starts a fresh set of cells (old ones stay on disk).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import torch

from odeflow.errors import InvalidInputError, OdeflowError
from studies.report import Summary, atomic_write_text, markdown_table, write_config, write_csv

__all__ = [
    "StudyResult",
    "run_study",
    "cell_key",
    "config_hash",
    "derive_seed",
    "is_timing_column",
    "check_config",
    "distributed_context",
    "DistContext",
    "finite_or_nan",
]

CELLS_DIR = ".cells"
Scalar = str | int | float | bool | None


# ----------------------------------------------------------------------------------------------
# keys and seeds
# ----------------------------------------------------------------------------------------------
def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(study: str, config: Any, version: Any = 1) -> str:
    """A short stable hash of (study, version, config) naming the cache folder of a run."""
    payload = {"study": study, "version": version, "config": dataclasses.asdict(config)}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:16]


def cell_key(cell: dict[str, Scalar]) -> str:
    """A readable, file-safe, unique key of a cell: its values joined, then a hash of the cell."""
    slug = "-".join(str(v) for v in cell.values())
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "_", slug)[:80].strip("_.-") or "cell"
    return f"{slug}-{hashlib.sha256(_canonical(cell).encode()).hexdigest()[:10]}"


def derive_seed(base: int, *parts: Any) -> int:
    """A deterministic seed in ``[0, 2**31)`` from a base seed and any labels (names, indices).

    Use it for common random numbers: the same ``(base, "problem", name)`` gives the same
    starting points for every solver, so their errors are compared on paired samples.
    """
    h = hashlib.sha256(_canonical([int(base), *[str(p) for p in parts]]).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def is_timing_column(name: str) -> bool:
    """Wall-clock columns (``wall_s``, ``*_wall_s``) go to timings.csv, not results.csv."""
    return name == "wall_s" or name.endswith("_wall_s")


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def _study_name(mod: ModuleType) -> str:
    return getattr(mod, "NAME", mod.__name__.rsplit(".", 1)[-1])


def check_config(mod: ModuleType, config: Any) -> None:
    """Check that ``config`` is the study's Config and passes its ``validate`` hook."""
    cfg_cls = getattr(mod, "Config", None)
    if cfg_cls is None or not dataclasses.is_dataclass(cfg_cls):
        raise TypeError(f"study module {mod.__name__} must define a dataclass Config")
    if not isinstance(config, cfg_cls):
        raise InvalidInputError(f"config must be a {mod.__name__}.Config, got {type(config).__name__}")
    for required in ("seed", "device"):
        if not hasattr(config, required):
            raise TypeError(f"{mod.__name__}.Config must have a {required!r} field")
    validate = getattr(mod, "validate", None)
    if validate is not None:
        validate(config)


def _check_scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{where}: a tensor of shape {tuple(value.shape)} is not a scalar")
        value = value.item()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"{where}: {type(value).__name__} is not a JSON scalar (str, int, float, bool, None)")


def _check_cells(cells: Iterable[dict[str, Any]], study: str) -> list[dict[str, Scalar]]:
    out, seen = [], {}
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or not cell:
            raise TypeError(f"{study}.cells() item {i} must be a non-empty dict, got {cell!r}")
        clean = {str(k): _check_scalar(v, f"{study} cell {i} key {k!r}") for k, v in cell.items()}
        key = cell_key(clean)
        if key in seen:
            raise ValueError(f"{study}.cells() yields the same cell twice: {clean}")
        seen[key] = i
        out.append(clean)
    return out


def _check_rows(rows: Any, cell: dict[str, Scalar], study: str) -> list[dict[str, Scalar]]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"{study}.run_cell must return a list of dicts, got {type(rows).__name__}")
    clean_rows = []
    for j, row in enumerate(rows):
        clean: dict[str, Scalar] = dict(cell)
        for k, v in row.items():
            v = _check_scalar(v, f"{study} cell {cell} row {j} column {k!r}")
            if k in cell and cell[k] != v:
                raise ValueError(f"{study} row column {k!r} = {v!r} contradicts the cell's {cell[k]!r}")
            clean[str(k)] = v
        clean_rows.append(clean)
    return clean_rows


# ----------------------------------------------------------------------------------------------
# torch.distributed
# ----------------------------------------------------------------------------------------------
@dataclass
class DistContext:
    """Rank, world size and whether this runner created the process group (and must destroy it)."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextmanager
def distributed_context(device: str = "cpu") -> Iterator[DistContext]:
    """Join the ``torchrun`` process group if ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    import torch.distributed as dist  # noqa: PLC0415

    if world <= 1 or not dist.is_available():
        yield DistContext()
        return
    owns = False
    if not dist.is_initialized():
        cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        owns = True
    ctx = DistContext(rank=dist.get_rank(), world=dist.get_world_size(), owns_group=owns)
    try:
        yield ctx
    finally:
        if owns:
            dist.destroy_process_group()


def _gather(ctx: DistContext, payload: Any) -> list[Any] | None:
    if ctx.world == 1:
        return [payload]
    import torch.distributed as dist  # noqa: PLC0415

    gathered: list[Any] | None = [None] * ctx.world if ctx.is_main else None
    dist.gather_object(payload, gathered, dst=0)
    return gathered


# ----------------------------------------------------------------------------------------------
# the cell cache
# ----------------------------------------------------------------------------------------------
def _load_cell(path: Path, key: str) -> list[dict[str, Scalar]] | None:
    """Rows of a saved cell, or None when absent or unreadable (then the cell is recomputed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("rows"), list):
        return None
    return data["rows"]


def _save_cell(path: Path, key: str, cell: dict[str, Scalar], rows: list[dict[str, Scalar]]) -> None:
    atomic_write_text(path, json.dumps({"key": key, "cell": cell, "rows": rows}, allow_nan=True) + "\n")


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# the runner
# ----------------------------------------------------------------------------------------------
@dataclass
class StudyResult:
    """What `run_study` returns. On ranks other than 0, ``df`` is empty and ``summary`` None.

    ``computed``/``reused``: cells run now / loaded from the cache — totals over all ranks on rank 0,
    this rank's own counts elsewhere.
    """

    study: str
    out: Path
    df: pd.DataFrame
    summary: Summary | None
    computed: int
    reused: int
    rank: int = 0
    world: int = 1

    @property
    def table_markdown(self) -> str:
        return "" if self.summary is None else markdown_table(self.summary.table, digits=self.summary.digits)


def _load_module(study: ModuleType | str) -> ModuleType:
    if isinstance(study, ModuleType):
        return study
    from studies.registry import load_study  # noqa: PLC0415 (avoid an import cycle)

    return load_study(study)


def run_study(
    study: ModuleType | str,
    config: Any = None,
    out: str | os.PathLike[str] | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    threads: int | None = 1,
) -> StudyResult:
    """Run every cell of a study (resuming from saved cells), merge, and write the report.

    ``study``: a module or a registered name; ``config``: its ``Config`` (default: ``Config()``);
    ``out``: output folder (default ``results/<study>``); ``resume=False`` recomputes every
    cell; ``threads``: torch threads while a cell runs (``None`` leaves the setting alone).
    Returns a `StudyResult`; on rank 0 its ``df`` holds all rows (timing columns included).
    """
    mod = _load_module(study)
    name = _study_name(mod)
    if config is None:
        config = mod.Config()
    check_config(mod, config)
    cells = _check_cells(mod.cells(config), name)
    keys = [cell_key(c) for c in cells]
    out_dir = Path(out) if out is not None else Path("results") / name
    cache = out_dir / CELLS_DIR / config_hash(name, config, getattr(mod, "CACHE_VERSION", 1))

    with distributed_context(str(getattr(config, "device", "cpu"))) as ctx:
        mine = [i for i in range(len(cells)) if i % ctx.world == ctx.rank]
        results: dict[int, list[dict[str, Scalar]]] = {}
        computed = reused = 0
        error: str | None = None
        cache.mkdir(parents=True, exist_ok=True)
        from tqdm.auto import tqdm  # noqa: PLC0415

        desc = name if ctx.world == 1 else f"{name} [rank {ctx.rank}/{ctx.world}]"
        bar = tqdm(total=len(mine), desc=desc, disable=not progress, position=ctx.rank, leave=ctx.is_main)
        try:
            for i in mine:
                path = cache / f"{keys[i]}.json"
                rows = _load_cell(path, keys[i]) if resume else None
                if rows is not None:
                    reused += 1
                else:
                    with _torch_threads(threads):
                        raw = mod.run_cell(config, dict(cells[i]))
                    rows = _check_rows(raw, cells[i], name)
                    _save_cell(path, keys[i], cells[i], rows)
                    computed += 1
                results[i] = rows
                bar.set_postfix(reused=reused, refresh=False)
                bar.update(1)
        except Exception as exc:  # reported to rank 0 so no rank waits forever in gather
            if ctx.world == 1:
                raise
            error = f"rank {ctx.rank}: {type(exc).__name__}: {exc}"
        finally:
            bar.close()

        gathered = _gather(ctx, {"rows": results, "error": error, "computed": computed, "reused": reused})
        if not ctx.is_main:
            return StudyResult(name, out_dir, pd.DataFrame(), None, computed, reused, ctx.rank, ctx.world)
        assert gathered is not None
        errors = [g["error"] for g in gathered if g["error"]]
        if errors:
            raise OdeflowError("study failed on " + "; ".join(errors))
        merged: dict[int, list[dict[str, Scalar]]] = {}
        for g in gathered:
            merged.update({int(k): v for k, v in g["rows"].items()})
        computed, reused = sum(g["computed"] for g in gathered), sum(g["reused"] for g in gathered)
        rows_all = [row for i in range(len(cells)) for row in merged[i]]
        df = pd.DataFrame(rows_all)
        with _torch_threads(threads):  # the report may compute too (e.g. trajectories for plots)
            summary = _write_outputs(mod, name, config, df, out_dir, ctx, len(cells))
        return StudyResult(name, out_dir, df, summary, computed, reused, ctx.rank, ctx.world)


def _write_outputs(
    mod: ModuleType, name: str, config: Any, df: pd.DataFrame, out: Path, ctx: DistContext, n_cells: int
) -> Summary:
    timing = [c for c in df.columns if is_timing_column(str(c))]
    write_csv(out / "results.csv", df.drop(columns=timing))
    if timing:
        keyed = df.copy()
        keyed.insert(0, "row", range(len(df)))
        write_csv(out / "timings.csv", keyed[["row", *[c for c in df.columns if c not in timing], *timing]])
    result = mod.report(df, out, config)
    summary = result if isinstance(result, Summary) else Summary(table=result)
    title = summary.title or getattr(mod, "TITLE", name)
    text = [f"# {title}", "", markdown_table(summary.table, digits=summary.digits)]
    for note in summary.notes:
        text += [note.strip(), ""]
    atomic_write_text(out / "table.md", "\n".join(text).rstrip() + "\n")
    write_config(
        out,
        name,
        config,
        extra={"world_size": ctx.world, "cells": n_cells, "rows": len(df), "timing_columns": timing},
    )
    return summary


def finite_or_nan(x: Any) -> float:
    """``float(x)`` if finite, else NaN (for rows: a diverged solve records NaN, not inf)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan
