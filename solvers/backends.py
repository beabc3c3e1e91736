r"""Reference backends: torchdiffeq's ``odeint`` and scipy's ODE solvers behind the same `solve`.

They are *peers to compare against*, not fast paths. Both count the field calls themselves
(``Solution.stats.nfe`` is the number of calls of your field, including finite-difference
Jacobians of implicit scipy methods), take the same grids and ``t_span``/``save_at`` and raise
the same errors.

- `TorchDiffEq` (``"torchdiffeq"``): fixed-grid methods (``euler``, ``midpoint``, ``heun2``,
  ``heun3``, ``rk4`` — the 3/8 rule —, ``explicit_adams``, ``implicit_adams``) step exactly on the
  given grid (``grid_constructor``); adaptive ones (``dopri5``, ``dopri8``, ``bosh3``,
  ``fehlberg2``, ``adaptive_heun``) use ``t_span`` and report at ``save_at``/the grid. torchdiffeq
  shares one step across the batch and uses a whole-tensor RMS norm; its ``max_num_steps`` counts
  per output interval, and it reports no step counts (``stats.steps`` is the grid's for fixed
  methods, 0 for adaptive ones).
- `SciPy` (``"scipy"``): ``RK45``, ``RK23``, ``DOP853``, ``Radau``, ``BDF``, ``LSODA`` of
  ``scipy.integrate`` on the flattened batch (one system of ``batch × dim`` equations, float64
  on the CPU: every field call copies to and from the host). Steps are driven here, so
  ``max_steps``, ``save="steps"`` (every accepted step) and partial solutions work as for our
  own adaptive solvers.

The step-level API also works (each `step` is one backend solve over ``[t0, t1]``), but a whole
`solve` is one backend call (`solve_full`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from odeflow._checks import check_choice, check_positive
from odeflow.errors import InvalidInputError, MaxStepsExceeded, NonFiniteError, StepSizeTooSmall
from solvers.base import Field, Solution, Solver, SolverState, Stats, register
from solvers.solve import check_grid

__all__ = ["TorchDiffEq", "SciPy", "TORCHDIFFEQ_FIXED", "TORCHDIFFEQ_ADAPTIVE", "SCIPY_METHODS"]

TORCHDIFFEQ_FIXED = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams")
TORCHDIFFEQ_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
SCIPY_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
_TDE_ORDER = {
    "euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4, "explicit_adams": 4, "implicit_adams": 4,
    "dopri5": 5, "dopri8": 8, "bosh3": 3, "fehlberg2": 2, "adaptive_heun": 2,
}  # fmt: skip
# field evaluations per step of torchdiffeq's fixed-grid methods (the Adams methods reuse history)
_TDE_FIXED_NFE = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4, "explicit_adams": 1}
_SCIPY_ORDER = {"RK45": 5, "RK23": 3, "DOP853": 8, "Radau": 5, "BDF": 5, "LSODA": 12}


class _Counter:
    """Wraps a field: counts calls, hands it ``t`` in ``x``'s dtype and checks the output shape."""

    def __init__(self, field: Field) -> None:
        self.field = field
        self.calls = 0

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.field(t.to(dtype=x.dtype, device=x.device), x)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InvalidInputError(f"the field must return a tensor shaped like x {tuple(x.shape)}, got {got}")
        return out


def _span_and_saves(
    grid: Any, t_span: Any, save_at: Any, need_grid: bool, solver_name: str
) -> tuple[torch.Tensor | None, float, float, torch.Tensor | None]:
    """Returns (validated grid or None, t0, t1, save times or None)."""
    if grid is not None:
        if save_at is not None:
            raise InvalidInputError("give either grid= or save_at=, not both")
        g = check_grid(grid)
        return g, float(g[0]), float(g[-1]), g
    if need_grid:
        raise InvalidInputError(f"{solver_name} is a fixed-grid method: pass grid= (e.g. solvers.grids.uniform(16))")
    from solvers.adaptive import _check_save_at, _check_span  # noqa: PLC0415 (shared validation)

    t0, t1 = _check_span(t_span)
    saves = None
    if save_at is not None:
        saves = torch.tensor(_check_save_at(save_at, t0, t1), dtype=torch.float64)
    return None, t0, t1, saves


def _check_save(save: str, save_at: Any) -> None:
    check_choice(save, ("final", "steps"), "save mode")
    if save == "steps" and save_at is not None:
        raise InvalidInputError("save='steps' and save_at are exclusive: choose every step or given times")


def _finite_or_raise(name: str, ts: torch.Tensor, xs: torch.Tensor, stats: Stats) -> None:
    finite = torch.isfinite(xs.reshape(xs.shape[0], -1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = int((~finite).nonzero()[0])
    good = max(bad - 1, 0)
    partial = Solution(x=xs[good], ts=ts[: good + 1].clone(), xs=xs[: good + 1].clone(), stats=stats)
    raise NonFiniteError(
        f"{name}: the state is non-finite at t = {float(ts[bad]):g} (output {bad}); the partial solution up to "
        f"t = {float(ts[good]):g} is in .partial",
        partial=partial,
        t=float(ts[bad]),
        step=bad,
    )


@register("torchdiffeq")
class TorchDiffEq(Solver):
    r"""``torchdiffeq.odeint`` (Chen et al. 2018) as a solver: any of its methods, same `Solution`.

    Order, stages and NFE per step are torchdiffeq's for ``method`` (``order`` is set per
    instance). Fixed methods need a grid and step exactly on it; adaptive methods take
    ``rtol``/``atol`` and ``options`` (e.g. ``first_step``, ``max_num_steps``). Use it as the
    reference our own solvers are compared with.
    """

    adaptive: ClassVar[bool] = False

    def __init__(self, method: str = "dopri5", rtol: float = 1e-7, atol: float = 1e-9, **options: Any) -> None:
        check_choice(method, TORCHDIFFEQ_FIXED + TORCHDIFFEQ_ADAPTIVE, "torchdiffeq method")
        check_positive(rtol, "rtol")
        check_positive(atol, "atol", allow_zero=True)
        self.method, self.rtol, self.atol, self.options = method, float(rtol), float(atol), dict(options)
        self.order = _TDE_ORDER[method]
        self.fixed = method in TORCHDIFFEQ_FIXED
        if method in _TDE_FIXED_NFE:
            self.stages = self.nfe_per_step = _TDE_FIXED_NFE[method]

    def _repr_params(self) -> dict[str, Any]:
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, **self.options}

    def _odeint(self, counter: _Counter, x: torch.Tensor, times: torch.Tensor, max_steps: int | None) -> torch.Tensor:
        from torchdiffeq import odeint  # noqa: PLC0415 (optional heavy import)

        options = dict(self.options)
        if self.fixed:
            options.setdefault("grid_constructor", lambda func, y0, t: t)
        elif max_steps is not None:
            options.setdefault("max_num_steps", max_steps)
        t = times.to(device=x.device)
        return odeint(counter, x, t, rtol=self.rtol, atol=self.atol, method=self.method, options=options)

    def solve_full(
        self,
        field: Field,
        x: torch.Tensor,
        *,
        grid: Any = None,
        t_span: Any = (1.0, 0.0),
        save: str = "final",
        save_at: Any = None,
        max_steps: int = 100_000,
        **options: Any,
    ) -> Solution:
        """One ``odeint`` call over the grid (fixed methods) or ``t_span`` (adaptive ones)."""
        if options:
            raise InvalidInputError(
                f"TorchDiffEq takes its options in the constructor (TorchDiffEq(method, rtol, atol, **options)), "
                f"got {sorted(options)}"
            )
        _check_save(save, save_at)
        name = f"torchdiffeq {self.method}"
        g, t0, t1, saves = _span_and_saves(grid, t_span, save_at, self.fixed, name)
        if self.fixed:
            if save_at is not None:
                raise InvalidInputError("save_at needs an adaptive method; with a fixed grid use save='steps'")
            n_steps = g.numel() - 1
            if n_steps > max_steps:
                raise MaxStepsExceeded(
                    f"the grid has {n_steps} steps, more than max_steps = {max_steps}",
                    partial=Solution(x=x, ts=g[:1].clone(), xs=x.unsqueeze(0), stats=Stats()),
                    t=t0,
                    step=0,
                )
            times = g
        else:
            if save == "steps":
                raise InvalidInputError(
                    "torchdiffeq does not expose its accepted steps; pass save_at= (or grid=) for states at given times"
                )
            times = saves if saves is not None else torch.tensor([t0, t1], dtype=torch.float64)
            if float(times[0]) != t0:
                times = torch.cat([torch.tensor([t0], dtype=torch.float64), times])
            if float(times[-1]) != t1:
                times = torch.cat([times, torch.tensor([t1], dtype=torch.float64)])
        counter = _Counter(field)
        try:
            ys = self._odeint(counter, x, times, None if self.fixed else max_steps)
        except AssertionError as exc:
            msg = str(exc)
            stats = Stats(nfe=counter.calls)
            partial = Solution(x=x, ts=times[:1].clone(), xs=x.unsqueeze(0), stats=stats)
            if "max_num_steps" in msg:
                raise MaxStepsExceeded(
                    f"{name} needed more than max_steps = {max_steps} steps in one output interval ({msg})",
                    partial=partial,
                    t=t0,
                    step=0,
                ) from None
            if "underflow" in msg:
                cls = StepSizeTooSmall if "nan" not in msg.lower() else NonFiniteError
                raise cls(f"{name}: {msg}", partial=partial, t=t0, step=0) from None
            raise
        n = times.numel() - 1
        stats = Stats(nfe=counter.calls, steps=n if self.fixed else 0, accepted=n if self.fixed else 0)
        _finite_or_raise(name, times, ys, stats)
        x_end = ys[-1]
        if self.fixed:
            if save == "steps":
                return Solution(x=x_end, ts=times.clone(), xs=ys, stats=stats)
            return Solution(x=x_end, stats=stats)
        if saves is not None:
            keep = torch.isin(times, saves)
            return Solution(x=x_end, ts=times[keep].clone(), xs=ys[keep], stats=stats)
        return Solution(x=x_end, stats=stats)

    def step(
        self, field: Field, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        counter = _Counter(field)
        times = torch.tensor([t0, t1], dtype=torch.float64)
        x1 = self._odeint(counter, x0, times, None)[-1]
        state.nfe += counter.calls
        return x1, state


@register("scipy")
class SciPy(Solver):
    r"""scipy's ``solve_ivp`` methods (``RK45``, ``RK23``, ``DOP853``, ``Radau``, ``BDF``, ``LSODA``).

    The batch is flattened into one system of ``batch × dim`` equations in float64 on the CPU
    (the result is cast back to ``x``'s dtype and device). scipy's error norm is the RMS over the
    whole system, so one hard sample sets the steps of all. Order per method as in scipy;
    ``Radau``/``BDF``/``LSODA`` are implicit (stiff problems) and estimate Jacobians by finite
    differences, whose field calls are counted in NFE.
    """

    adaptive: ClassVar[bool] = False

    def __init__(self, method: str = "RK45", rtol: float = 1e-3, atol: float = 1e-6, **options: Any) -> None:
        check_choice(method, SCIPY_METHODS, "scipy method")
        check_positive(rtol, "rtol")
        check_positive(atol, "atol", allow_zero=True)
        self.method, self.rtol, self.atol, self.options = method, float(rtol), float(atol), dict(options)
        self.order = _SCIPY_ORDER[method]

    def _repr_params(self) -> dict[str, Any]:
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, **self.options}

    def solve_full(
        self,
        field: Field,
        x: torch.Tensor,
        *,
        grid: Any = None,
        t_span: Any = (1.0, 0.0),
        save: str = "final",
        save_at: Any = None,
        max_steps: int = 100_000,
        **options: Any,
    ) -> Solution:
        """Drive the scipy ``OdeSolver`` step by step (so ``max_steps`` and partial results work)."""
        from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, Radau  # noqa: PLC0415

        if options:
            raise InvalidInputError(
                f"SciPy takes its options in the constructor (SciPy(method, rtol, atol, **options)), "
                f"got {sorted(options)}"
            )
        _check_save(save, save_at)
        name = f"scipy {self.method}"
        _, t0, t1, saves = _span_and_saves(grid, t_span, save_at, False, name)
        shape, dtype, device = x.shape, x.dtype, x.device
        counter = _Counter(field)
        nonfinite_at: list[float] = []

        def fun(t: float, y: np.ndarray) -> np.ndarray:
            xt = torch.from_numpy(y).reshape(shape).to(dtype=dtype, device=device)
            out = counter(torch.tensor(t, dtype=torch.float64), xt)
            res = out.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy()
            if not np.all(np.isfinite(res)):  # already on the host: checking is free here
                nonfinite_at.append(t)
            return res

        cls = {"RK45": RK45, "RK23": RK23, "DOP853": DOP853, "Radau": Radau, "BDF": BDF, "LSODA": LSODA}[self.method]
        y0 = x.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy().copy()
        ode = cls(fun, t0, y0, t1, rtol=self.rtol, atol=self.atol, **self.options)
        direction = 1.0 if t1 > t0 else -1.0
        save_list = saves.tolist() if saves is not None else None
        ts: list[float] = []
        ys: list[np.ndarray] = []
        idx = 0
        if save == "steps":
            ts.append(t0)
            ys.append(y0.copy())
        stats = Stats()

        def to_torch(y: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(y)).reshape(shape).to(dtype=dtype, device=device)

        def partial() -> Solution:
            stats.nfe = counter.calls
            cur = to_torch(ode.y)
            snap = Stats(**vars(stats))
            if ts:
                return Solution(x=cur, ts=torch.tensor(ts, dtype=torch.float64), xs=stacked(), stats=snap)
            return Solution(x=cur, ts=torch.tensor([ode.t], dtype=torch.float64), xs=cur.unsqueeze(0), stats=snap)

        def stacked() -> torch.Tensor:
            return torch.stack([to_torch(y) for y in ys])

        while save_list is not None and idx < len(save_list) and save_list[idx] == t0:
            ts.append(t0)
            ys.append(y0.copy())
            idx += 1
        while ode.status == "running":
            if stats.steps >= max_steps:
                raise MaxStepsExceeded(
                    f"{name} needed more than max_steps = {max_steps} steps (reached t = {ode.t:g})",
                    partial=partial(),
                    t=float(ode.t),
                    step=stats.steps,
                )
            t_old = ode.t
            message = ode.step()
            if ode.status == "failed":
                stats.nfe = counter.calls
                if nonfinite_at or not np.all(np.isfinite(ode.y)):
                    where = f" (non-finite field values, last at t = {nonfinite_at[-1]:g})" if nonfinite_at else ""
                    raise NonFiniteError(f"{name} failed at t = {ode.t:g} in step {stats.steps}: {message}{where}",
                                         partial=partial(), t=float(ode.t), step=stats.steps)  # fmt: skip
                raise StepSizeTooSmall(f"{name} failed at t = {ode.t:g} in step {stats.steps}: {message}",
                                       partial=partial(), t=float(ode.t), step=stats.steps)  # fmt: skip
            stats.steps += 1
            stats.accepted += 1
            if not np.all(np.isfinite(ode.y)):
                raise NonFiniteError(
                    f"{name}: the state became non-finite in step {stats.steps - 1} (t = {t_old:g} to {ode.t:g})",
                    partial=partial(),
                    t=float(ode.t),
                    step=stats.steps - 1,
                )
            if save == "steps":
                ts.append(float(ode.t))
                ys.append(ode.y.copy())
            if save_list is not None:
                dense = None
                while idx < len(save_list) and direction * (save_list[idx] - ode.t) <= 0:
                    s = save_list[idx]
                    if s == ode.t:
                        ys.append(ode.y.copy())
                    else:
                        dense = dense or ode.dense_output()
                        ys.append(np.asarray(dense(s)))
                    ts.append(s)
                    idx += 1
        stats.nfe = counter.calls
        x_end = to_torch(ode.y)
        if ts:
            return Solution(x=x_end, ts=torch.tensor(ts, dtype=torch.float64), xs=stacked(), stats=stats)
        return Solution(x=x_end, stats=stats)

    def step(
        self, field: Field, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        sol = self.solve_full(field, x0, t_span=(t0, t1), max_steps=10**9)
        state.nfe += sol.stats.nfe
        return sol.x, state
