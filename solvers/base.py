"""The solver contract (DESIGN.md §3): `Solver` with a step-level API, `Solution`, `Stats`.

Every solver, ours or a user's, is driven one step at a time::

    state = solver.init(field, t0, x0)
    x1, state = solver.step(field, t0, t1, x0, state)

``t0``/``t1`` are Python floats (taken once from a float64 grid, so the loop never syncs the
host); the field is called as ``field(t, x)`` with ``t`` a 0-d tensor of ``x``'s dtype and
device. The solver counts its field evaluations in ``state.nfe`` — exactly, every method.
`solvers.solve` is a loop over this API.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from odeflow._checks import check_choice
from odeflow.errors import InvalidInputError

__all__ = [
    "Stats",
    "Solution",
    "SolverState",
    "Solver",
    "register",
    "get_solver",
    "solver_names",
    "SOLVERS",
]

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Stats:
    """Work counters of one solve: field evaluations, steps, accepted and rejected steps."""

    nfe: int = 0
    steps: int = 0
    accepted: int = 0
    rejected: int = 0


@dataclass
class Solution:
    """Result of `solve`: the final state ``x``; saved times ``ts`` (float64, 1-d) and states
    ``xs`` (shape ``(len(ts), *x.shape)``) when saving was asked for, else ``None``; ``stats``."""

    x: torch.Tensor
    ts: torch.Tensor | None = None
    xs: torch.Tensor | None = None
    stats: Stats = field(default_factory=Stats)


@dataclass
class SolverState:
    """Mutable per-solve state carried between steps.

    ``nfe`` counts field evaluations so far. ``data`` holds whatever the method needs between
    steps (an FSAL derivative, a multistep history, a Brownian path, an error estimate …).
    """

    nfe: int = 0
    data: dict[str, Any] = field(default_factory=dict)


class Solver(ABC):
    """Base class of every integrator.

    Class attributes describe the method and are part of its public contract:

    - ``name``: registry name (``"rk4"``);
    - ``order``: global order of convergence (strong order for SDE solvers);
    - ``stages``: field evaluations per step without reuse;
    - ``nfe_per_step``: field evaluations per step in steady state (after FSAL or history reuse);
    - ``adaptive``: chooses its own steps (uses ``t_span``, not ``grid``);
    - ``kind``: ``"ode"``, ``"exponential"`` (needs a `ProbabilityFlow`) or ``"sde"``.
    """

    name: ClassVar[str] = ""
    order: ClassVar[float] = 1
    stages: ClassVar[int] = 1
    nfe_per_step: ClassVar[int] = 1
    adaptive: ClassVar[bool] = False
    kind: ClassVar[str] = "ode"

    def init(self, field: Field, t0: float, x0: torch.Tensor, **options: Any) -> SolverState:
        """Start a solve at ``(t0, x0)``; returns the state passed to the first `step`."""
        return SolverState()

    @abstractmethod
    def step(
        self, field: Field, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        """Advance from ``(t0, x0)`` to ``t1``; returns the new state tensor and solver state."""

    def __repr__(self) -> str:
        params = getattr(self, "_repr_params", lambda: {})()
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({inner})"


SOLVERS: dict[str, Callable[..., Solver]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a solver available by ``name`` in `get_solver` and `solve`."""

    def deco(cls: type) -> type:
        if name in SOLVERS and SOLVERS[name] is not cls:
            raise RuntimeError(f"solver name {name!r} registered twice")
        SOLVERS[name] = cls
        if not getattr(cls, "name", ""):
            cls.name = name
        return cls

    return deco


def solver_names() -> list[str]:
    """Registered solver names, sorted."""
    return sorted(SOLVERS)


def get_solver(solver: str | Solver, **kwargs: Any) -> Solver:
    """A solver instance from a registered name (with constructor ``kwargs``) or an instance."""
    if isinstance(solver, Solver):
        if kwargs:
            raise InvalidInputError("constructor options are only accepted with a solver name")
        return solver
    if hasattr(solver, "step") and hasattr(solver, "init") and not isinstance(solver, str):
        return solver  # duck-typed user solver written against the step API
    check_choice(solver, solver_names(), "solver")
    try:
        return SOLVERS[solver](**kwargs)
    except TypeError as exc:
        raise InvalidInputError(f"bad options for solver {solver!r}: {exc}") from None
