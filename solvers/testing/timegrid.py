"""Time grids for the checks: uniform, uniform in log-SNR, random and quadratic.

Kept apart from `solvers.grids` on purpose: the toolkit must be able to test a solver
without trusting any other part of the library. Every grid is a strictly monotone float64
tensor of ``n + 1`` points from ``t_start`` to ``t_end`` (decreasing when ``t_start > t_end``,
the sampling direction), with both end points exact.
"""

from __future__ import annotations

import math

import torch

from odeflow._checks import check_choice, check_positive
from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath

__all__ = ["GRID_KINDS", "time_grid"]

GRID_KINDS: tuple[str, ...] = ("uniform", "log_snr", "random", "quadratic")

#: largest ratio between the longest and the shortest step of a ``"random"`` grid
RANDOM_STEP_RATIO = 3.0


def time_grid(
    n: int,
    kind: str = "uniform",
    t_start: float = 1.0,
    t_end: float = 0.0,
    *,
    path: GaussianPath | None = None,
    seed: int = 0,
) -> torch.Tensor:
    r"""A grid of ``n`` steps (``n + 1`` float64 times) from ``t_start`` to ``t_end``.

    ``kind``:

    - ``"uniform"``: equal steps in $t$;
    - ``"log_snr"``: equal steps in the half log-SNR $\lambda(t)$ of ``path`` (needs a path and
      finite $\lambda$ at both ends) — the natural grid of exponential integrators;
    - ``"random"``: steps drawn from ``seed`` with longest/shortest ratio at most
      `RANDOM_STEP_RATIO` (variable-step code paths, bounded so orders stay measurable);
    - ``"quadratic"``: $t$ quadratic in the step index, finer near ``t_end``.
    """
    check_positive(n, "n", integer=True)
    check_choice(kind, GRID_KINDS, "grid kind")
    t_start, t_end = float(t_start), float(t_end)
    if not (0.0 <= t_start <= 1.0 and 0.0 <= t_end <= 1.0) or t_start == t_end:
        raise InvalidInputError(f"t_start ({t_start:g}) and t_end ({t_end:g}) must be distinct times in [0, 1]")
    s = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
    if kind == "uniform":
        frac = s
    elif kind == "quadratic":
        frac = 1.0 - (1.0 - s) ** 2
    elif kind == "random":
        g = torch.Generator().manual_seed(int(seed))
        w = 1.0 + (RANDOM_STEP_RATIO - 1.0) * torch.rand(n, generator=g, dtype=torch.float64)
        frac = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(w, 0) / w.sum()])
    else:  # log_snr
        if path is None:
            raise InvalidInputError("a 'log_snr' grid needs path= (a GaussianPath)")
        lam0, lam1 = path.log_snr(t_start), path.log_snr(t_end)
        if not (math.isfinite(lam0) and math.isfinite(lam1)):
            raise InvalidInputError(
                f"a 'log_snr' grid needs finite log-SNR at both ends; on {path!r} λ({t_start:g}) = {lam0:g}, "
                f"λ({t_end:g}) = {lam1:g}: move the end points inside (0, 1)"
            )
        lam = lam0 + (lam1 - lam0) * s
        grid = path.t_from_log_snr(lam).to(torch.float64)
        grid[0], grid[-1] = t_start, t_end
        _check_monotone(grid, kind)
        return grid
    grid = t_start + (t_end - t_start) * frac
    grid[0], grid[-1] = t_start, t_end
    _check_monotone(grid, kind)
    return grid


def _check_monotone(grid: torch.Tensor, kind: str) -> None:
    d = grid[1:] - grid[:-1]
    if not (bool((d < 0).all()) or bool((d > 0).all())):
        raise InvalidInputError(
            f"the {kind!r} grid of {grid.numel() - 1} steps is not strictly monotone in float64 (too many steps "
            "for this interval)"
        )
