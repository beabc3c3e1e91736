r"""Explicit Adams–Bashforth methods on variable grids.

The $k$-step method integrates the polynomial $P$ through the last $k$ derivatives
$(t_{n-j}, f_{n-j})$, $j = 0..k-1$:

$$x_{n+1} = x_n + \int_{t_n}^{t_{n+1}} P(s)\,ds = x_n + h_n\sum_{j=0}^{k-1}\beta_{n,j} f_{n-j},\qquad
\beta_{n,j} = \int_0^1 \prod_{m \ne j}\frac{u - u_m}{u_j - u_m}\,du,\quad u_m = \frac{t_{n-m} - t_n}{h_n},$$

so the coefficients come from the actual step sizes (on a uniform grid they are the classic
$(\tfrac32, -\tfrac12)$, $(\tfrac{23}{12}, -\tfrac{16}{12}, \tfrac{5}{12})$,
$(\tfrac{55}{24}, -\tfrac{59}{24}, \tfrac{37}{24}, -\tfrac{9}{24})$). Order $k$, 1 NFE per step
once $k$ derivatives are known. The first $k - 1$ steps use a Runge–Kutta method of the same
order (Heun for $k = 2$, Kutta's RK3 for 3, RK4 for 4), whose first stage supplies the history;
a start of order $q$ makes a local error $O(h^{q+1})$ in a fixed number of steps, i.e. a global
$O(h^{q+1})$, so an Euler start would cap AB3/AB4 at order 2. NFE for $n \ge k - 1$ steps: $(k-1)\,s_{RK} + n - k + 1$.

Reference: Hairer, Nørsett & Wanner I, §III.1 and §III.5 (variable step sizes).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from odeflow.errors import InvalidInputError
from solvers.base import Field, Solver, SolverState, register
from solvers.runge_kutta import RK3 as _RK3
from solvers.runge_kutta import RK4 as _RK4
from solvers.runge_kutta import Heun as _Heun
from solvers.runge_kutta import _check_output, _combine, rk_step, time_tensor

__all__ = ["AdamsBashforth", "AB2", "AB3", "AB4", "adams_bashforth_coefficients"]

_STARTERS = {2: _Heun.tableau, 3: _RK3.tableau, 4: _RK4.tableau}


def _poly_mul(p: list[float], q: list[float]) -> list[float]:
    out = [0.0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def adams_bashforth_coefficients(times: list[float], t_next: float) -> list[float]:
    r"""Weights $\beta_j$ with $x_{n+1} = x_n + h\sum_j \beta_j f(t_{n-j})$; ``times`` = $[t_n, t_{n-1}, \dots]$.

    Exact integration of the Lagrange basis over $[t_n, t_{n+1}]$ in the scaled variable
    $u = (s - t_n)/h$; Python floats, no tensors (no host sync).
    """
    t_n = times[0]
    h = t_next - t_n
    if h == 0.0:
        raise InvalidInputError("Adams–Bashforth step of zero length")
    u = [(t - t_n) / h for t in times]
    betas = []
    for j, uj in enumerate(u):
        poly = [1.0]
        denom = 1.0
        for m, um in enumerate(u):
            if m != j:
                poly = _poly_mul(poly, [-um, 1.0])
                denom *= uj - um
        if denom == 0.0:
            raise InvalidInputError("Adams–Bashforth history has two equal times; grids must be strictly monotone")
        betas.append(sum(c / (i + 1) for i, c in enumerate(poly)) / denom)
    return betas


@register("adams_bashforth")
class AdamsBashforth(Solver):
    r"""Adams–Bashforth of order ``order`` ∈ {2, 3, 4} with variable-step coefficients.

    Order $k$, 1 stage, 1 NFE per step after a Runge–Kutta start of order $k$ for the first
    $k - 1$ steps (Heun / RK3 / RK4: 2, 3, 4 NFE each). Cheapest per step of the classical
    methods: good on smooth fields with many steps (NFE ≳ 20); unstable for large steps on
    stiff or rapidly turning fields, where the RK and exponential methods are safer.
    The step API keeps the history in ``state.data``; a step that does not start where the
    previous one ended (``t0`` ≠ last ``t1``) restarts the method.
    """

    stages: ClassVar[int] = 1
    nfe_per_step: ClassVar[int] = 1
    order: ClassVar[float] = 2

    def __init__(self, order: int = 2) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order not in (2, 3, 4):
            raise InvalidInputError(f"Adams–Bashforth order must be 2, 3 or 4, got {order!r}")
        self.order = order  # instance value shadows the class default
        self.starter = _STARTERS[order]

    def _repr_params(self) -> dict[str, Any]:
        return {"order": self.order}

    def init(self, field: Field, t0: float, x0: torch.Tensor, **options: Any) -> SolverState:
        if options:
            raise InvalidInputError(f"{type(self).__name__} takes no solve options, got {sorted(options)}")
        return SolverState(data={"hist": [], "t_next": t0})

    def step(
        self, field: Field, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        hist: list[tuple[float, torch.Tensor]] = state.data.setdefault("hist", [])
        if state.data.get("t_next") != t0:
            hist.clear()
        k = self.order
        if len(hist) < k - 1:
            x1, ks, nfe = rk_step(field, self.starter, t0, t1, x0)
            state.nfe += nfe
            hist.insert(0, (t0, ks[0]))
        else:
            f0 = _check_output(field(time_tensor(t0, x0), x0), x0)
            state.nfe += 1
            hist.insert(0, (t0, f0))
            del hist[k:]
            betas = adams_bashforth_coefficients([t for t, _ in hist], t1)
            x1 = _combine(x0, [f for _, f in hist], tuple(enumerate(betas)), t1 - t0)
        del hist[k - 1 :]  # keep the k - 1 newest; the next step adds its own
        state.data["t_next"] = t1
        return x1, state


@register("ab2")
class AB2(AdamsBashforth):
    r"""Two-step Adams–Bashforth: order 2, 1 NFE per step (Heun start: 2 NFE for the first step)."""

    order: ClassVar[float] = 2

    def __init__(self) -> None:
        super().__init__(order=2)


@register("ab3")
class AB3(AdamsBashforth):
    r"""Three-step Adams–Bashforth: order 3, 1 NFE per step (RK3 start: 3 NFE for each of 2 steps)."""

    order: ClassVar[float] = 3

    def __init__(self) -> None:
        super().__init__(order=3)


@register("ab4")
class AB4(AdamsBashforth):
    r"""Four-step Adams–Bashforth: order 4, 1 NFE per step (RK4 start: 4 NFE for each of 3 steps)."""

    order: ClassVar[float] = 4

    def __init__(self) -> None:
        super().__init__(order=4)
