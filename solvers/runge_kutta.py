r"""Explicit Runge–Kutta solvers: one generic step driven by a `ButcherTableau`.

A step from $(t_0, x_0)$ to $t_1$ with $h = t_1 - t_0$ evaluates the stages
$k_i = f(t_0 + c_i h,\, x_0 + h\sum_{j<i} a_{ij}k_j)$ and returns
$x_1 = x_0 + h\sum_i b_i k_i$. Each stage state is built with one ``torch.add(x0, k, alpha=)``
followed by in-place ``add_(k, alpha=)`` on that fresh tensor (never on a tensor the field has
seen, so a field returning its input, or keeping it for autograd, stays correct); zero
coefficients are skipped and the scalars $h a_{ij}$ are Python floats, so a step allocates one
tensor per stage plus the field's outputs and never synchronises the host.

Fixed-step classes (use a grid): `Euler`, `Midpoint`, `Heun`, `Ralston`, `RK3`, `SSPRK3`,
`RK4`, `RK38`. Embedded pairs (adaptive by default, see `solvers.adaptive`): `HeunEuler`,
`Bosh3`, `Dopri5`, `Tsit5`, `DOP853`. Every class states order, stages and NFE per step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from odeflow.errors import InvalidInputError
from solvers.base import Field, Solver, SolverState, register
from solvers.tableaux import (
    BOSH3,
    DOP853,
    DOPRI5,
    EULER,
    HEUN,
    HEUN_EULER,
    MIDPOINT,
    RALSTON,
    RK3,
    RK4,
    RK38,
    SSPRK3,
    TSIT5,
    ButcherTableau,
)

__all__ = [
    "RungeKutta",
    "EmbeddedRungeKutta",
    "rk_step",
    "Euler",
    "Midpoint",
    "Heun",
    "Ralston",
    "RK3",
    "SSPRK3",
    "RK4",
    "RK38",
    "HeunEuler",
    "Bosh3",
    "Dopri5",
    "Tsit5",
    "DOP853",
]


def time_tensor(t: float, x: torch.Tensor) -> torch.Tensor:
    """``t`` as a 0-d tensor of ``x``'s dtype and device, without a host→device copy (a fill)."""
    return torch.full((), t, dtype=x.dtype, device=x.device)


Weights = tuple[tuple[int, float], ...]


def _combine(x0: torch.Tensor, ks: list[torch.Tensor], weights: Weights, h: float) -> torch.Tensor:
    """``x0 + h * sum_j w_j k_j`` over the nonzero ``(j, w_j)``; a fresh tensor, updated in place."""
    out: torch.Tensor | None = None
    for j, w in weights:
        if out is None:
            out = torch.add(x0, ks[j], alpha=h * w)
        else:
            out.add_(ks[j], alpha=h * w)
    return x0 if out is None else out


def _weighted_sum(ks: list[torch.Tensor], weights: Weights, h: float) -> torch.Tensor:
    """``h * sum_j w_j k_j`` (used for error estimates)."""
    out: torch.Tensor | None = None
    for j, w in weights:
        if out is None:
            out = torch.mul(ks[j], h * w)
        else:
            out.add_(ks[j], alpha=h * w)
    if out is None:
        return torch.zeros_like(ks[0])
    return out


class _Compiled:
    """Sparse (index, weight) form of a tableau, computed once per tableau."""

    def __init__(self, tab: ButcherTableau) -> None:
        self.c = tab.c
        self.rows = tuple(tuple((j, w) for j, w in enumerate(row) if w != 0.0) for row in tab.a)
        self.b = tuple((j, w) for j, w in enumerate(tab.b) if w != 0.0)
        self.err = None if tab.b_err is None else tuple((j, w) for j, w in enumerate(tab.b_err) if w != 0.0)
        self.err2 = None if tab.b_err2 is None else tuple((j, w) for j, w in enumerate(tab.b_err2) if w != 0.0)
        self.fsal = tab.fsal
        self.stages = tab.stages


_COMPILED: dict[int, _Compiled] = {}


def _compiled(tab: ButcherTableau) -> _Compiled:
    key = id(tab)
    comp = _COMPILED.get(key)
    if comp is None or comp.c is not tab.c:
        comp = _COMPILED[key] = _Compiled(tab)
    return comp


def _check_output(k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(k, torch.Tensor) or k.shape != x.shape:
        got = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
        raise InvalidInputError(f"the field must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    return k


def rk_step(
    field: Field,
    tab: ButcherTableau,
    t0: float,
    t1: float,
    x0: torch.Tensor,
    k0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    r"""One explicit Runge–Kutta step of ``tab`` from ``(t0, x0)`` to ``t1``.

    ``k0`` is $f(t_0, x_0)$ if already known (FSAL reuse). Returns ``(x1, ks, nfe)`` with the
    stage derivatives ``ks`` (for FSAL tableaux ``ks[-1]`` $= f(t_1, x_1)$) and the number of
    field evaluations made. Stage times with $c_i = 1$ are exactly ``t1``.
    """
    comp = _compiled(tab)
    h = t1 - t0
    nfe = 0
    if k0 is None:
        k0 = _check_output(field(time_tensor(t0, x0), x0), x0)
        nfe = 1
    ks = [k0]
    x1: torch.Tensor | None = None
    for i in range(1, comp.stages):
        ci = comp.c[i]
        xi = _combine(x0, ks, comp.rows[i], h)
        ti = t1 if ci == 1.0 else t0 + ci * h
        ks.append(field(time_tensor(ti, x0), xi))
        nfe += 1
        if comp.fsal and i == comp.stages - 1:
            x1 = xi
    if x1 is None:
        x1 = _combine(x0, ks, comp.b, h)
    return x1, ks, nfe


def rk_error(tab: ButcherTableau, ks: list[torch.Tensor], h: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The error estimate(s) $h\\sum_i e_i k_i$ of an embedded tableau (second one for DOP853)."""
    comp = _compiled(tab)
    if comp.err is None:
        raise InvalidInputError(f"tableau {tab.name!r} has no embedded error estimate")
    err = _weighted_sum(ks, comp.err, h)
    err2 = None if comp.err2 is None else _weighted_sum(ks, comp.err2, h)
    return err, err2


class RungeKutta(Solver):
    """Generic explicit Runge–Kutta solver of a class-level `ButcherTableau` (fixed steps).

    Subclasses set ``tableau``; ``order``, ``stages`` and ``nfe_per_step`` follow from it.
    FSAL tableaux reuse the last stage of the previous step when the next step starts at the
    same ``(t, x)`` (the tensor returned by the previous `step`).
    """

    tableau: ClassVar[ButcherTableau] = EULER

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tab = cls.__dict__.get("tableau")
        if tab is not None:
            cls.order = tab.order
            cls.stages = tab.stages
            cls.nfe_per_step = tab.nfe_per_step

    def init(self, field: Field, t0: float, x0: torch.Tensor, **options: Any) -> SolverState:
        if options:
            raise InvalidInputError(
                f"{type(self).__name__} takes no solve options, got {sorted(options)}; "
                "adaptive options (rtol, atol, dt0, dt_min, ...) need an adaptive solver"
            )
        return SolverState()

    def _advance(
        self, field: Field, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One tableau step with FSAL reuse and NFE accounting; returns the new state and the stages."""
        k0 = None
        if self.tableau.fsal:
            prev = state.data.get("fsal")
            if prev is not None and prev[0] == t0 and prev[1] is x0:
                k0 = prev[2]
        x1, ks, nfe = rk_step(field, self.tableau, t0, t1, x0, k0)
        state.nfe += nfe
        if self.tableau.fsal:
            state.data["fsal"] = (t1, x1, ks[-1])
        return x1, ks

    def step(
        self, field: Field, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        x1, _ = self._advance(field, t0, t1, x0, state)
        return x1, state


class EmbeddedRungeKutta(RungeKutta):
    """An embedded pair: adaptive by default (``solve`` hands it to `solvers.adaptive`).

    Constructor arguments are the adaptive defaults: ``rtol``, ``atol`` and the keyword
    options of `solvers.adaptive.solve_adaptive` (``norm``, ``controller``, ``dt0``, ``dt_min``,
    ``dt_max``). Its `step` also works on a fixed grid (no error control) and leaves the
    local error estimate in ``state.data["error"]`` when ``state.data["want_error"]`` is set.
    """

    adaptive: ClassVar[bool] = True

    def __init__(self, rtol: float = 1e-6, atol: float = 1e-6, **options: Any) -> None:
        from solvers.adaptive import check_adaptive_options  # noqa: PLC0415 (adaptive imports this module)

        check_adaptive_options(rtol=rtol, atol=atol, **options)
        self.rtol, self.atol = float(rtol), float(atol)
        self.options = dict(options)

    def _repr_params(self) -> dict[str, Any]:
        return {"rtol": self.rtol, "atol": self.atol, **self.options}

    def step(
        self, field: Field, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        x1, ks = self._advance(field, t0, t1, x0, state)
        if state.data.get("want_error"):
            state.data["error"] = rk_error(self.tableau, ks, t1 - t0)
        return x1, state


# ---------------------------------------------------------------------------------------------
# Fixed-step methods
# ---------------------------------------------------------------------------------------------
@register("euler")
class Euler(RungeKutta):
    r"""Forward Euler: $x_1 = x_0 + h f(t_0, x_0)$.

    Order 1, 1 stage, 1 NFE per step. The baseline every sampler is measured against; the
    Flux/SD3 scheduler and DDIM (on the linear path, in the right variables) are Euler steps.
    """

    tableau = EULER


@register("midpoint")
class Midpoint(RungeKutta):
    r"""Explicit midpoint: $k_2 = f(t_0 + h/2, x_0 + \tfrac h2 k_1)$, $x_1 = x_0 + h k_2$.

    Order 2, 2 stages, 2 NFE per step. Same cost as `Heun`; often slightly better on
    curved flows because its second evaluation is not at the (noisier) end point.
    """

    tableau = MIDPOINT


@register("heun")
class Heun(RungeKutta):
    r"""Heun's method (explicit trapezoid): $x_1 = x_0 + \tfrac h2(k_1 + k_2)$, $k_2 = f(t_1, x_0 + h k_1)$.

    Order 2, 2 stages, 2 NFE per step. EDM's sampler (Karras et al. 2022) is this method
    on the σ grid; torchdiffeq's ``heun2``.
    """

    tableau = HEUN


@register("ralston")
class Ralston(RungeKutta):
    r"""Ralston's second-order method: $c_2 = \tfrac23$, $b = (\tfrac14, \tfrac34)$.

    Order 2, 2 stages, 2 NFE per step. Minimises the leading local error constant among
    2-stage second-order methods (Ralston 1962).
    """

    tableau = RALSTON


@register("rk3")
class RK3(RungeKutta):
    r"""Kutta's third-order method: $c = (0, \tfrac12, 1)$, $b = (\tfrac16, \tfrac23, \tfrac16)$.

    Order 3, 3 stages, 3 NFE per step.
    """

    tableau = RK3


@register("ssprk3")
class SSPRK3(RungeKutta):
    r"""Shu–Osher strong-stability-preserving RK3: $c = (0, 1, \tfrac12)$, $b = (\tfrac16, \tfrac16, \tfrac23)$.

    Order 3, 3 stages, 3 NFE per step; a convex combination of Euler steps (SSP coefficient 1),
    so it keeps any convex invariant Euler keeps (Shu & Osher 1988).
    """

    tableau = SSPRK3


@register("rk4")
class RK4(RungeKutta):
    r"""The classic fourth-order Runge–Kutta method, $b = (\tfrac16, \tfrac13, \tfrac13, \tfrac16)$.

    Order 4, 4 stages, 4 NFE per step. Good when the field is smooth and NFE ≳ 16.
    """

    tableau = RK4


@register("rk38")
class RK38(RungeKutta):
    r"""Kutta's 3/8 rule: $c = (0, \tfrac13, \tfrac23, 1)$, $b = (\tfrac18, \tfrac38, \tfrac38, \tfrac18)$.

    Order 4, 4 stages, 4 NFE per step; usually a smaller error constant than `RK4`. This is
    what torchdiffeq calls ``rk4``.
    """

    tableau = RK38


# ---------------------------------------------------------------------------------------------
# Embedded pairs (adaptive)
# ---------------------------------------------------------------------------------------------
@register("heun_euler")
class HeunEuler(EmbeddedRungeKutta):
    r"""Heun–Euler 2(1): Heun's method with Euler as the embedded solution.

    Order 2 (error estimate of order 1), 2 stages, 2 NFE per step (no FSAL). Only for
    loose tolerances; dense output is cubic Hermite. torchdiffeq's ``adaptive_heun``.
    """

    tableau = HEUN_EULER


@register("bosh3")
class Bosh3(EmbeddedRungeKutta):
    r"""Bogacki–Shampine 3(2) (Bogacki & Shampine 1989), FSAL.

    Order 3 (embedded 2), 4 stages, 3 NFE per step after the first. scipy's ``RK23``;
    good at loose tolerances (rtol ≳ 1e-4). Dense output: cubic Hermite (3rd order).
    """

    tableau = BOSH3


@register("dopri5")
class Dopri5(EmbeddedRungeKutta):
    r"""Dormand–Prince 5(4) (Dormand & Prince 1980), FSAL, with Shampine's dense output.

    Order 5 (embedded 4, local extrapolation), 7 stages, 6 NFE per step after the first.
    scipy's ``RK45`` and torchdiffeq's default; the general-purpose choice at rtol 1e-3..1e-8.
    """

    tableau = DOPRI5


@register("tsit5")
class Tsit5(EmbeddedRungeKutta):
    r"""Tsitouras 5(4) (Tsitouras 2011), FSAL, with its own 4th-order interpolant.

    Order 5 (embedded 4), 7 stages, 6 NFE per step after the first. Usually a little more
    efficient than `Dopri5` (smaller error constants, fewer simplifying assumptions).
    """

    tableau = TSIT5


@register("dop853")
class DOP853(EmbeddedRungeKutta):
    r"""Dormand–Prince 8(5,3) (Hairer–Nørsett–Wanner I, §II.10), FSAL.

    Order 8 (error from a 5th- and a 3rd-order estimate combined), 13 stages counting the
    FSAL one, 12 NFE per step. scipy's ``DOP853``; for tight tolerances (rtol ≲ 1e-8) on
    smooth fields. Dense output here: cubic Hermite (its 7th-order interpolant needs 3 extra
    stages and is not implemented), so prefer `Dopri5`/`Tsit5` when ``save_at`` matters.
    """

    tableau = DOP853
