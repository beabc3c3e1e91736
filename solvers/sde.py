r"""Fixed-step solvers for Itô SDEs $dx = f(t, x)\,dt + g(t, x)\,dW$ on a `BrownianPath`.

An SDE is any object with ``drift(t, x)`` (shaped like ``x``) and ``diffusion(t, x)`` (a number,
a 0-d tensor or a tensor broadcastable to ``x``: scalar or diagonal noise) — `odeflow.ForwardSDE`,
`odeflow.ReverseSDE` or a user class. Time may run either way: sampling with a `ReverseSDE` goes
from $t = 1$ to $0$ with $\Delta t < 0$ and increments $\Delta W = W(t_1) - W(t_0)$ of variance
$|\Delta t|$. The noise comes from ``init(..., brownian=BrownianPath(...))`` (or ``seed=``); with
one path per sample, solves over different step counts see the same Brownian motion, which is
what strong-error studies need (`solvers.brownian`).

| solver | update | strong order | weak order | drift evals/step |
|---|---|---|---|---|
| `EulerMaruyama` | $x + f\,\Delta t + g\,\Delta W$ | ½ (1 for additive noise) | 1 | 1 |
| `SDEHeun` | $x + \tfrac12(f_0 + f(\tilde x))\Delta t + \tfrac12(g_0 + g_1)\Delta W$ | 1 (additive noise) | 1 | 2 |

(`SDEHeun`'s predictor is the Euler–Maruyama step $\tilde x = x + f_0\Delta t + g_0\Delta W$.)

``state.nfe`` counts drift evaluations — each costs one model call for a `ReverseSDE`;
diffusion evaluations are analytic there and not counted.

`SDEHeun` is the stochastic Heun method (Kloeden & Platen 1992, §15.1; Gard 1988) for **additive**
noise, the case of every forward and reverse SDE of a Gaussian path. With multiplicative noise
the trapezoid in $g$ makes it converge to the *Stratonovich* solution, so it refuses SDEs that
declare ``noise_type`` other than ``"additive"``; use `EulerMaruyama` (Itô) there. Rößler's SRA1
(strong order 1.5 for additive noise) needs the time integral of $W$ over each step, which a
Brownian-bridge tree does not give consistently across refinements; it is not provided.

References: Kloeden & Platen, *Numerical Solution of Stochastic Differential Equations* (1992),
§9–10 (Euler–Maruyama: strong ½, weak 1; strong 1 with additive noise); Higham, *An
Algorithmic Introduction to Numerical Simulation of SDEs*, SIAM Review 43 (2001).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from odeflow.errors import InvalidInputError
from solvers.base import Solver, SolverState, register
from solvers.brownian import BrownianPath

__all__ = ["SDESolver", "EulerMaruyama", "SDEHeun", "check_sde"]


def check_sde(sde: Any, who: str) -> Any:
    """Return ``sde`` if it has callable ``drift(t, x)`` and ``diffusion(t, x)``."""
    if not (callable(getattr(sde, "drift", None)) and callable(getattr(sde, "diffusion", None))):
        raise InvalidInputError(
            f"{who} integrates SDEs: give an object with drift(t, x) and diffusion(t, x) (odeflow.ForwardSDE, "
            f"odeflow.ReverseSDE or your own), got {type(sde).__name__}; for an ODE field use an ODE solver"
        )
    return sde


class SDESolver(Solver):
    """Base of the fixed-step SDE solvers: SDE check, Brownian path set-up, noise term."""

    kind = "sde"
    strong_order: ClassVar[float] = 0.5
    strong_order_additive: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0

    def init(
        self,
        field: Any,
        t0: float,
        x0: torch.Tensor,
        *,
        brownian: Any = None,
        seed: int | None = None,
        **options: Any,
    ) -> SolverState:
        """Check the SDE and set up the noise: ``brownian=`` a `BrownianPath` of ``x0``'s shape, or ``seed=``.

        With neither, a `BrownianPath` is seeded from torch's global RNG.
        """
        if options:
            raise InvalidInputError(
                f"{type(self).__name__}.init got unknown options {sorted(options)}; it accepts brownian=, seed="
            )
        check_sde(field, type(self).__name__)
        self._check_noise_type(field)
        if brownian is not None and seed is not None:
            raise InvalidInputError("give brownian= or seed=, not both")
        if brownian is None:
            if seed is None:
                seed = int(torch.randint(0, 2**62, ()).item())
            brownian = BrownianPath(seed, x0.shape, dtype=x0.dtype, device=x0.device)
        shape = getattr(brownian, "shape", None)
        if not callable(brownian) or shape is None or tuple(shape) != tuple(x0.shape):
            raise InvalidInputError(
                f"brownian must be a BrownianPath with shape equal to the state's {tuple(x0.shape)} "
                f"(one Brownian motion per sample and coordinate), got {type(brownian).__name__} "
                f"with shape {None if shape is None else tuple(shape)}"
            )
        state = SolverState()
        state.data["brownian"] = brownian
        return state

    def _check_noise_type(self, sde: Any) -> None:
        """Hook: refuse SDEs the method is not consistent for."""

    @staticmethod
    def _increment(state: SolverState, t0: float, t1: float, x: torch.Tensor) -> torch.Tensor:
        dw = state.data["brownian"](t0, t1)
        if dw.dtype != x.dtype or dw.device != x.device:
            dw = dw.to(dtype=x.dtype, device=x.device)
        return dw

    @staticmethod
    def _noise(g: Any, dw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """$g\\,\\Delta W$ for scalar or diagonal $g$, checked to be shaped like ``x``."""
        if not isinstance(g, torch.Tensor):
            g = torch.as_tensor(g, dtype=x.dtype, device=x.device)
        try:
            noise = g * dw
        except RuntimeError:
            noise = None
        if noise is None or noise.shape != x.shape:
            raise InvalidInputError(
                f"diffusion(t, x) has shape {tuple(g.shape)}, which does not broadcast to the state {tuple(x.shape)}; "
                "give a number, a 0-d tensor or a diagonal tensor shaped like x"
            )
        return noise

    @staticmethod
    def _drift(sde: Any, t: float, x: torch.Tensor, state: SolverState) -> torch.Tensor:
        state.nfe += 1
        f = sde.drift(t, x)
        if not isinstance(f, torch.Tensor) or f.shape != x.shape:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise InvalidInputError(
                f"drift(t, x) returned {got}; it must return a tensor shaped like x {tuple(x.shape)}"
            )
        return f


@register("euler_maruyama")
class EulerMaruyama(SDESolver):
    r"""Euler–Maruyama: $x_1 = x_0 + f(t_0, x_0)\Delta t + g(t_0, x_0)\Delta W$.

    Strong order ½ (1 with additive noise), weak order 1; 1 drift evaluation per step.
    """

    order = 0.5
    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    stages = 1
    nfe_per_step = 1

    def step(
        self, field: Any, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        """One Euler–Maruyama step from ``t0`` to ``t1``."""
        dt = float(t1) - float(t0)
        f = self._drift(field, t0, x0, state)
        dw = self._increment(state, t0, t1, x0)
        return x0 + f * dt + self._noise(field.diffusion(t0, x0), dw, x0), state


@register("sde_heun")
class SDEHeun(SDESolver):
    r"""Stochastic Heun for additive noise (Kloeden & Platen 1992, §15.1).

    $\tilde x = x_0 + f_0\Delta t + g_0\Delta W$,
    $x_1 = x_0 + \tfrac12\big(f_0 + f(t_1, \tilde x)\big)\Delta t + \tfrac12\big(g(t_0) + g(t_1)\big)\Delta W$.
    Strong order 1 and weak order 1 for additive noise (time-dependent $g$ allowed); 2 drift
    evaluations per step. Refuses SDEs whose ``noise_type`` is not ``"additive"``.
    """

    order = 1.0
    strong_order = 1.0
    strong_order_additive = 1.0
    weak_order = 1.0
    stages = 2
    nfe_per_step = 2

    def _check_noise_type(self, sde: Any) -> None:
        noise_type = getattr(sde, "noise_type", "additive")
        if noise_type != "additive":
            raise InvalidInputError(
                f"SDEHeun needs additive noise, but the SDE declares noise_type={noise_type!r}; with multiplicative "
                "noise it converges to the Stratonovich solution. Use EulerMaruyama for Itô SDEs with such noise"
            )

    def step(
        self, field: Any, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        """One stochastic Heun step from ``t0`` to ``t1``."""
        dt = float(t1) - float(t0)
        dw = self._increment(state, t0, t1, x0)
        f0 = self._drift(field, t0, x0, state)
        noise0 = self._noise(field.diffusion(t0, x0), dw, x0)
        x_pred = x0 + f0 * dt + noise0
        f1 = self._drift(field, t1, x_pred, state)
        noise1 = self._noise(field.diffusion(t1, x_pred), dw, x0)
        return x0 + (0.5 * dt) * (f0 + f1) + 0.5 * (noise0 + noise1), state
