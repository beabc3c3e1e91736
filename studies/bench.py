r"""Timing side by side: warm-up, interleaved repeats, medians and paired ratios.

DESIGN.md §5: benchmarks report *ratios measured side by side in one process*, never a bare
absolute time. `time_interleaved` runs every candidate once per round, in a rotating order, for
``repeats`` rounds after ``warmup`` untimed calls each, with the garbage collector off during a
timed call. Machine-wide slow-downs (another process waking up, frequency changes) then hit all
candidates of a round alike, and `paired_ratio` — the median over rounds of
$t_a^{(r)} / t_b^{(r)}$ — cancels them; the ratio of medians is reported beside it.

`torch_threads` pins the number of intra-op threads for a block (restoring it afterwards), so a
table says how many cores it was measured with. `interpolate_loglog` reads work off an
error-vs-work curve at a given error (log–log linear interpolation), for comparisons at equal
accuracy.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from odeflow._checks import check_positive
from odeflow.errors import InvalidInputError

__all__ = ["Timing", "torch_threads", "time_interleaved", "paired_ratio", "interpolate_loglog", "sync"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of ``repeats`` timed calls of one candidate (in round order)."""

    name: str
    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def iqr(self) -> float:
        """Interquartile range (a spread that ignores the odd slow round)."""
        q1, q3 = np.percentile(self.times, [25, 75])
        return float(q3 - q1)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` (``None``: leave the setting alone)."""
    if n is None:
        yield
        return
    check_positive(n, "threads", integer=True)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sync(device: str | torch.device = "cpu") -> None:
    """Wait for queued kernels on ``device`` (CUDA) before reading a clock; no-op on the CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 7,
    warmup: int = 1,
    device: str | torch.device = "cpu",
) -> dict[str, Timing]:
    """Time each callable ``repeats`` times, interleaved round by round, after ``warmup`` calls each.

    Round ``r`` runs the candidates in the order rotated by ``r`` (so none always runs first).
    Returns a `Timing` per name, in the order given.
    """
    if not candidates:
        raise InvalidInputError("time_interleaved needs at least one candidate")
    check_positive(repeats, "repeats", integer=True)
    check_positive(warmup, "warmup", integer=True, allow_zero=True)
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # tensors are freed by reference counting; a cycle collection must not land in a timed call
    try:
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                start = time.perf_counter()
                candidates[name]()
                sync(device)
                times[name].append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(name, tuple(times[name])) for name in names}


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over rounds of ``a.times[r] / b.times[r]`` (both from one `time_interleaved` call)."""
    if len(a.times) != len(b.times):
        raise InvalidInputError(f"{a.name} and {b.name} have different numbers of rounds")
    return statistics.median(x / y for x, y in zip(a.times, b.times))


def interpolate_loglog(errors: Sequence[float], work: Sequence[float], target: float) -> float:
    """Work at error ``target`` on a work-precision curve, by linear interpolation in log–log.

    Points are sorted by error; NaN is returned when ``target`` lies outside the measured range
    (no extrapolation). Non-positive or non-finite points are ignored.
    """
    pts = sorted(
        (float(e), float(w)) for e, w in zip(errors, work) if math.isfinite(e) and math.isfinite(w) and e > 0 and w > 0
    )
    if not pts or not (math.isfinite(target) and target > 0):
        return math.nan
    le = np.log([p[0] for p in pts])
    lw = np.log([p[1] for p in pts])
    lt = math.log(target)
    if lt < le[0] - 1e-12 or lt > le[-1] + 1e-12:
        return math.nan
    # errors need not be monotone in tolerance; interpolate on the error-sorted curve
    return float(np.exp(np.interp(lt, le, lw)))
