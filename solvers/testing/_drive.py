"""Driving a solver through the step API, and counting what it really evaluates.

The checks never go through `solve` for the numbers they measure: they drive
``solver.init``/``solver.step`` on a fixed grid exactly as `solvers.solve` does, so a
user's solver needs nothing but the step API, and an adaptive method is measured as the
fixed-step method it is built on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from odeflow.dynamics import ProbabilityFlow

__all__ = ["CountingField", "CountingFlow", "CountingSDE", "counting", "run_steps"]


class CountingField:
    """``field(t, x)`` that counts its calls in ``calls``."""

    def __init__(self, field: Any) -> None:
        self.inner = field
        self.calls = 0

    def __call__(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(t, x)

    def __repr__(self) -> str:
        return f"Counting({self.inner!r})"


class CountingFlow(ProbabilityFlow):
    """A `ProbabilityFlow` that counts model evaluations (every prediction goes through `predict_kinds`)."""

    def __init__(self, flow: ProbabilityFlow) -> None:  # noqa: D107 - no super().__init__: a view
        self.inner = flow
        self.model = flow.model
        self.path = flow.path
        self.prediction = flow.prediction
        self.calls = 0

    def predict_kinds(self, t: Any, x: torch.Tensor, kinds: Sequence[str]) -> tuple[torch.Tensor, ...]:
        self.calls += 1
        return self.inner.predict_kinds(t, x, kinds)

    def __getattr__(self, name: str) -> Any:  # other attributes of the wrapped flow (e.g. ``data``)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"Counting({self.inner!r})"


class CountingSDE:
    """An SDE (``drift``/``diffusion``) that counts drift evaluations — the model calls."""

    def __init__(self, sde: Any) -> None:
        self.inner = sde
        self.calls = 0

    def drift(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner.drift(t, x)

    def diffusion(self, t: Any, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner.diffusion(t, x)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"Counting({self.inner!r})"


def counting(field: Any) -> CountingField | CountingFlow | CountingSDE:
    """Wrap an ODE field, a `ProbabilityFlow` or an SDE so that its evaluations are counted."""
    if isinstance(field, ProbabilityFlow):
        return CountingFlow(field)
    if hasattr(field, "drift") and hasattr(field, "diffusion"):
        return CountingSDE(field)
    return CountingField(field)


def run_steps(
    solver: Any, field: Any, x: torch.Tensor, grid: torch.Tensor | Sequence[float], **init_options: Any
) -> tuple[torch.Tensor, Any]:
    """Integrate over ``grid`` with the step API; returns the final state and the solver state.

    As `solvers.solve` does, the whole grid is passed to ``init`` when it accepts ``grid=``
    (look-ahead rules such as ``lower_order_final``). The solver gets a copy of ``x``, so a
    solver that writes into its input cannot corrupt the problem it is tested on (the
    ``interface`` check of `check_solver` reports such writes).
    """
    from solvers.solve import accepts_grid  # noqa: PLC0415 - same rule as solve()

    times = grid.tolist() if isinstance(grid, torch.Tensor) else [float(t) for t in grid]
    x = x.clone()
    if "grid" not in init_options and accepts_grid(solver):
        init_options = {**init_options, "grid": times}  # as solve() does: enables look-ahead rules
    state = solver.init(field, times[0], x, **init_options)
    for i in range(len(times) - 1):
        out = solver.step(field, times[i], times[i + 1], x, state)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{type(solver).__name__}.step must return a pair (x_new, state), got {type(out).__name__}")
        x, state = out
    return x, state
