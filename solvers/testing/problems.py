r"""Analytic test problems: a field, a start state ``x1`` and the exact solution ``exact(t)``.

Every problem is a small `Problem` object, float64 by default, batched (``x1`` has shape
``(batch, dim)``) and valid on its whole interval (no overflow, bounded conditioning):

| constructor | equation | exact solution |
|---|---|---|
| `linear_problem` | $y' = A y$ | $y(t) = e^{A(t - t_s)} y(t_s)$ (matrix exponential) |
| `logistic_problem` | $y' = r\,y(1 - y)$ | $y(t) = 1/\big(1 + \tfrac{1-y_s}{y_s}e^{-r(t - t_s)}\big)$ |
| `riccati_problem` | $y' = a(1 + y^2)$ | $y(t) = \tan\big(a(t - t_s) + \arctan y_s\big)$ |
| `polynomial_problem` | $y' = \sum_{k<d} c_k t^k$ | $y(t) = y_s + \sum_k c_k (t^{k+1} - t_s^{k+1})/(k+1)$ |
| `gaussian_flow_problem` | PF-ODE of $N(\mu, \Sigma)$ data on a path | `odeflow.gaussian.GaussianData.flow_map` |

($t_s$ = ``t_start``, 1 by default: problems run in the sampling direction, $t = 1 \to 0$.)
A method of order $p$ integrates `polynomial_problem` of degree $\le p$ exactly (the
solution is a polynomial of degree $d$; the field one of degree $d - 1$).

SDE problems (`linear_sde_problem`, `gbm_problem`) carry an exact *pathwise* solution that
is coupled to the Brownian path handed to the solver (`SDEProblem.sample`), so strong
errors are measured against the truth, not against a fine-grid approximation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from odeflow._checks import check_choice, check_positive
from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError
from odeflow.gaussian import GaussianData
from odeflow.paths import CosinePath, GaussianPath, LinearPath, VPPath
from solvers.testing.timegrid import time_grid

__all__ = [
    "Problem",
    "SDEProblem",
    "SDESample",
    "GridBrownianPath",
    "LINEAR_VARIANTS",
    "linear_problem",
    "logistic_problem",
    "riccati_problem",
    "polynomial_problem",
    "gaussian_flow_problem",
    "gaussian_interval",
    "mixture_flow_problem",
    "linear_sde_problem",
    "gbm_problem",
    "default_problems",
    "reversible_problems",
    "default_sde_problems",
]

F64 = torch.float64

#: variants of `linear_problem`
LINEAR_VARIANTS: tuple[str, ...] = ("well_conditioned", "rotational", "mildly_stiff")

#: exponential problems stay where $|\lambda| \le$ this, so that a log-SNR grid is finite
LOG_SNR_BOUND = 4.0


# --------------------------------------------------------------------------------------------
# the problem object
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Problem:
    r"""An ODE with a known solution.

    ``field(t, x)`` is the right-hand side (for Gaussian problems a `ProbabilityFlow`, so
    exponential integrators accept it); ``x1`` is the state at ``t_start`` (shape
    ``(batch, dim)``); ``exact(t)`` the true state at any ``t`` between ``t_start`` and
    ``t_end``. ``grid_kind`` is the grid on which orders are measured (``"uniform"``, or
    ``"log_snr"`` for exponential integrators); ``path`` the Gaussian path, if any; ``floor``
    the relative error below which ``exact`` itself is not trusted (float64 round-off, or the
    accuracy of a numerical reference).
    """

    name: str
    field: Any
    x1: torch.Tensor
    solution: Callable[[float], torch.Tensor]
    t_start: float = 1.0
    t_end: float = 0.0
    grid_kind: str = "uniform"
    path: GaussianPath | None = None
    params: dict[str, Any] = field(default_factory=dict)
    floor: float = 1e-13

    def exact(self, t: float) -> torch.Tensor:
        """The exact state at time ``t`` (``x1``'s dtype; a fresh tensor)."""
        return self.solution(float(t)).to(self.x1.dtype, copy=True)

    @property
    def x_end(self) -> torch.Tensor:
        """The exact state at ``t_end``."""
        return self.exact(self.t_end)

    @property
    def is_flow(self) -> bool:
        """Whether the field is a `ProbabilityFlow` (usable by exponential integrators)."""
        return isinstance(self.field, ProbabilityFlow)

    def grid(self, n: int, kind: str | None = None, seed: int = 0) -> torch.Tensor:
        """``n`` steps from ``t_start`` to ``t_end`` (see `solvers.testing.timegrid.time_grid`)."""
        return time_grid(n, kind or self.grid_kind, self.t_start, self.t_end, path=self.path, seed=seed)

    def reversed(self) -> Problem:
        """The same trajectory run the other way: from ``exact(t_end)`` at ``t_end`` back to ``t_start``."""
        return replace(
            self,
            name=self.name + " (reversed)",
            x1=self.exact(self.t_end),
            t_start=self.t_end,
            t_end=self.t_start,
        )

    def to(self, dtype: torch.dtype) -> Problem:
        """The problem with ``x1`` (and hence every solve and ``exact``) in ``dtype``."""
        return replace(self, x1=self.x1.to(dtype))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        b, d = self.x1.shape[0], self.x1.shape[1] if self.x1.dim() > 1 else 1
        return (
            f"{self.name}({inner}; batch={b}, dim={d}, t: {self.t_start:g} -> {self.t_end:g}, {self.x1.dtype})"
            .replace("(; ", "(")
        )


def _short(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return repr([round(float(a), 4) for a in v.flatten()]) if v.numel() <= 16 else f"tensor{tuple(v.shape)}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return repr(v)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _check_batch_dim(batch: int, dim: int) -> None:
    check_positive(batch, "batch", integer=True)
    check_positive(dim, "dim", integer=True)


# --------------------------------------------------------------------------------------------
# linear systems y' = A y
# --------------------------------------------------------------------------------------------
class LinearField:
    """``field(t, x) = x @ A.T`` for a batch of states (rows), in ``x``'s dtype."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A = A.to(F64)
        self._cast: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        key = (x.dtype, x.device)
        if key not in self._cast:
            self._cast[key] = self.A.T.to(dtype=x.dtype, device=x.device).contiguous()
        return x @ self._cast[key]

    def __repr__(self) -> str:
        return f"LinearField(A={[[round(float(a), 4) for a in row] for row in self.A]})"


def _well_conditioned_basis(dim: int, g: torch.Generator) -> torch.Tensor:
    """An invertible matrix with condition number at most 2: Q·diag(s), s in [1, 2]."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
    q = q * torch.sign(torch.diagonal(r))
    s = 1.0 + torch.rand(dim, generator=g, dtype=F64)
    return q * s


def linear_problem(
    dim: int = 3,
    variant: str = "well_conditioned",
    *,
    rates: list[float] | None = None,
    batch: int = 2,
    seed: int = 0,
    t_start: float = 1.0,
    t_end: float = 0.0,
) -> Problem:
    r"""$y' = Ay$ with $y(t) = e^{A(t - t_{start})}y(t_{start})$ (``torch.linalg.matrix_exp``, float64).

    ``variant``:

    - ``"well_conditioned"``: real eigenvalues $\pm r_i$, $r_i \in [0.2, 1]$, eigenbasis with
      condition number $\le 2$ (growth over the unit interval at most $2e$);
    - ``"rotational"``: $A = Q\,\mathrm{blockdiag}(\omega_i J)\,Q^\top$ with
      $J = \big(\begin{smallmatrix}0 & 1\\ -1 & 0\end{smallmatrix}\big)$, $\omega_i \in [0.5, 3]$,
      orthogonal $Q$ — norm-preserving; odd ``dim`` is rounded up;
    - ``"mildly_stiff"``: real eigenvalues $r_i \in [0.5, 10]$ (the largest $\ge 5$), positive,
      so that modes *decay* in the sampling direction $1 \to 0$; stiffness ratio $\le 20$.

    ``rates`` overrides the $r_i$ / $\omega_i$ (one per eigenvalue / rotation block; for
    ``"well_conditioned"`` they are the signed eigenvalues themselves); ``seed`` draws the basis,
    the signs and ``x1`` (standard normal).
    """
    _check_batch_dim(batch, dim)
    check_choice(variant, LINEAR_VARIANTS, "linear variant")
    g = _generator(seed)
    if variant == "rotational":
        blocks = (dim + 1) // 2
        dim = 2 * blocks
        omegas = torch.as_tensor(rates, dtype=F64) if rates is not None else 0.5 + 2.5 * torch.rand(blocks, generator=g)
        if omegas.numel() != blocks:
            raise InvalidInputError(f"rotational problem of dim {dim} needs {blocks} rates, got {omegas.numel()}")
        J = torch.zeros(dim, dim, dtype=F64)
        for i, w in enumerate(omegas.to(F64)):
            J[2 * i, 2 * i + 1], J[2 * i + 1, 2 * i] = w, -w
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
        A = q @ J @ q.T
        spectrum = omegas
    else:
        if rates is not None:
            r = torch.as_tensor(rates, dtype=F64)
            if r.numel() != dim:
                raise InvalidInputError(f"linear problem of dim {dim} needs {dim} rates, got {r.numel()}")
        elif variant == "well_conditioned":
            r = 0.2 + 0.8 * torch.rand(dim, generator=g, dtype=F64)
        else:
            r = 0.5 + 9.5 * torch.rand(dim, generator=g, dtype=F64)
            r[0] = 5.0 + 5.0 * float(torch.rand(1, generator=g, dtype=F64))
        if variant == "well_conditioned":
            signs = torch.where(torch.rand(dim, generator=g) < 0.5, -1.0, 1.0).to(F64)
            lam = signs * r if rates is None else r
        else:
            lam = r.abs()
        S = _well_conditioned_basis(dim, g)
        A = S @ torch.diag(lam) @ torch.linalg.inv(S)
        spectrum = lam
    x1 = torch.randn(batch, dim, generator=g, dtype=F64)
    cache: dict[float, torch.Tensor] = {}

    def solution(t: float) -> torch.Tensor:
        if t not in cache:
            cache[t] = x1 @ torch.linalg.matrix_exp(A * (t - t_start)).T
        return cache[t]

    return Problem(
        name=f"linear_{variant}",
        field=LinearField(A),
        x1=x1,
        solution=solution,
        t_start=t_start,
        t_end=t_end,
        params={"spectrum": spectrum, "seed": seed},
    )


# --------------------------------------------------------------------------------------------
# scalar closed forms (applied elementwise to a batch of start values)
# --------------------------------------------------------------------------------------------
class _ElementwiseField:
    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], text: str) -> None:
        self.fn, self.text = fn, text

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.fn(t, x)

    def __repr__(self) -> str:
        return self.text


def logistic_problem(
    rate: float = 2.0,
    *,
    y1: list[float] | None = None,
    batch: int = 4,
    seed: int = 0,
    t_start: float = 1.0,
    t_end: float = 0.0,
) -> Problem:
    r"""Logistic growth $y' = r\,y(1-y)$, elementwise, with start values in $[0.05, 0.95]$.

    $y(t) = 1/\big(1 + \tfrac{1 - y_s}{y_s}e^{-r(t - t_s)}\big)$ stays in $(0, 1)$ for all $t$.
    """
    check_positive(rate, "rate")
    check_positive(batch, "batch", integer=True)
    if y1 is None:
        y = 0.05 + 0.9 * torch.rand(batch, 1, generator=_generator(seed), dtype=F64)
    else:
        y = torch.as_tensor(y1, dtype=F64).reshape(-1, 1)
        if bool(((y <= 0) | (y >= 1)).any()):
            raise InvalidInputError("logistic start values must lie in (0, 1)")
    r = float(rate)
    c = (1.0 - y) / y

    def solution(t: float) -> torch.Tensor:
        return 1.0 / (1.0 + c * math.exp(-r * (t - t_start)))

    return Problem(
        name="logistic",
        field=_ElementwiseField(lambda t, x: r * x * (1.0 - x), f"y' = {r:.4g}·y·(1 - y)"),
        x1=y,
        solution=solution,
        t_start=t_start,
        t_end=t_end,
        params={"rate": r},
    )


def riccati_problem(
    a: float = 1.0,
    *,
    y1: list[float] | None = None,
    batch: int = 4,
    seed: int = 0,
    t_start: float = 1.0,
    t_end: float = 0.0,
    margin: float = 0.35,
) -> Problem:
    r"""Riccati equation $y' = a(1 + y^2)$, elementwise: $y(t) = \tan(a(t - t_s) + \arctan y_s)$.

    Start values are drawn so that the phase $a(t - t_s) + \arctan y_s$ stays at least
    ``margin`` away from the poles $\pm\pi/2$ on the whole interval ($|y| \le \cot(\text{margin})$,
    2.7 by default). Needs $a\,|t_{end} - t_s| < \pi - 2\,$``margin``.
    """
    check_positive(a, "a")
    check_positive(batch, "batch", integer=True)
    a = float(a)
    span = a * (t_end - t_start)
    lo = -math.pi / 2 + margin - min(span, 0.0)
    hi = math.pi / 2 - margin - max(span, 0.0)
    if lo >= hi:
        raise InvalidInputError(f"riccati a = {a:g} is too large for the interval: the solution reaches a pole")
    if y1 is None:
        theta = lo + (hi - lo) * torch.rand(batch, 1, generator=_generator(seed), dtype=F64)
    else:
        theta = torch.atan(torch.as_tensor(y1, dtype=F64).reshape(-1, 1))
        if bool(((theta < lo) | (theta > hi)).any()):
            raise InvalidInputError(f"riccati start values must satisfy arctan(y1) in [{lo:.3f}, {hi:.3f}]")
    y = torch.tan(theta)

    def solution(t: float) -> torch.Tensor:
        return torch.tan(a * (t - t_start) + theta)

    return Problem(
        name="riccati",
        field=_ElementwiseField(lambda t, x: a * (1.0 + x * x), f"y' = {a:.4g}·(1 + y²)"),
        x1=y,
        solution=solution,
        t_start=t_start,
        t_end=t_end,
        params={"a": a},
    )


def polynomial_problem(
    degree: int,
    *,
    dim: int = 2,
    batch: int = 2,
    coefficients: torch.Tensor | None = None,
    seed: int = 0,
    t_start: float = 1.0,
    t_end: float = 0.0,
) -> Problem:
    r"""$y' = \sum_{k=0}^{d-1} c_k t^k$ (non-autonomous, independent of $y$), whose solution is a
    polynomial of degree $d$ = ``degree`` in $t$.

    ``coefficients``: shape ``(degree, dim)``, row $k$ the vector $c_k$ (drawn from $N(0, 1)$ by
    ``seed`` otherwise). Degree 0 is $y' = 0$.
    """
    check_positive(degree, "degree", integer=True, allow_zero=True)
    _check_batch_dim(batch, dim)
    g = _generator(seed)
    if coefficients is None:
        c = torch.randn(degree, dim, generator=g, dtype=F64)
    else:
        c = torch.as_tensor(coefficients, dtype=F64)
        if c.shape != (degree, dim):
            raise InvalidInputError(f"coefficients must have shape ({degree}, {dim}), got {tuple(c.shape)}")
    x1 = torch.randn(batch, dim, generator=g, dtype=F64)
    powers = torch.arange(degree, dtype=F64)

    def rhs(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if degree == 0:
            return torch.zeros_like(x)
        tt = torch.as_tensor(t, dtype=F64).cpu() ** powers
        v = (tt[:, None] * c).sum(0)
        return v.to(dtype=x.dtype, device=x.device).expand_as(x).clone()

    def solution(t: float) -> torch.Tensor:
        if degree == 0:
            return x1.clone()
        k1 = powers + 1.0
        w = (t**k1 - t_start**k1) / k1
        return x1 + (w[:, None] * c).sum(0)

    return Problem(
        name=f"polynomial_degree{degree}",
        field=_ElementwiseField(rhs, f"y' = polynomial of degree {degree - 1} in t"),
        x1=x1,
        solution=solution,
        t_start=t_start,
        t_end=t_end,
        params={"degree": degree, "seed": seed},
    )


# --------------------------------------------------------------------------------------------
# PF-ODE of Gaussian data
# --------------------------------------------------------------------------------------------
def gaussian_interval(path: GaussianPath, for_exponential: bool = False) -> tuple[float, float]:
    r"""The default ``(t_start, t_end)`` of a Gaussian flow problem on ``path``.

    ODE solvers run over the whole $[1, 0]$ (the exact velocity is finite at both ends on every
    path, VP's $t = 0$ included, where $\dot\sigma = \infty$ but $\sigma\dot\sigma$ is not).
    Exponential integrators run where $|\lambda| \le 4$ (clipped to the path's own range), so
    that a log-SNR-uniform grid is finite.
    """
    if not for_exponential:
        return (1.0, 0.0)
    lam_hi_t = max(float(path.log_snr(1.0)), -LOG_SNR_BOUND)
    lam_lo_t = min(float(path.log_snr(0.0)), LOG_SNR_BOUND)
    t_start = 1.0 if lam_hi_t == float(path.log_snr(1.0)) else float(path.t_from_log_snr(lam_hi_t))
    t_end = 0.0 if lam_lo_t == float(path.log_snr(0.0)) else float(path.t_from_log_snr(lam_lo_t))
    return t_start, t_end


def gaussian_flow_problem(
    path: GaussianPath | None = None,
    *,
    dim: int = 2,
    batch: int = 3,
    mean: torch.Tensor | None = None,
    cov_eigenvalues: torch.Tensor | None = None,
    seed: int = 0,
    for_exponential: bool = False,
    t_start: float | None = None,
    t_end: float | None = None,
) -> Problem:
    r"""The exact PF-ODE of Gaussian data $N(\mu, \Sigma)$ on ``path`` (default `LinearPath`).

    $\mu$ is drawn in $[-1, 1]^d$, $\Sigma = Q\,\mathrm{diag}(s)\,Q^\top$ with $s \in [0.25, 2]$
    and random orthogonal $Q$ (so the marginal covariances $C_t = \alpha_t^2\Sigma + \sigma_t^2 I$
    are well conditioned), ``x1`` is a sample of the marginal at ``t_start``. The exact solution
    is the closed-form flow map $\phi_{t_s\to t}$ of `odeflow.gaussian.GaussianData`. With
    ``for_exponential=True`` the interval is the one of `gaussian_interval` and orders are
    measured on log-SNR-uniform grids.
    """
    path = LinearPath() if path is None else path
    if not isinstance(path, GaussianPath):
        raise InvalidInputError(f"path must be a GaussianPath, got {type(path).__name__}")
    _check_batch_dim(batch, dim)
    g = _generator(seed)
    mu = torch.as_tensor(mean, dtype=F64) if mean is not None else 2.0 * torch.rand(dim, generator=g, dtype=F64) - 1
    s = (
        torch.as_tensor(cov_eigenvalues, dtype=F64)
        if cov_eigenvalues is not None
        else 0.25 + 1.75 * torch.rand(dim, generator=g, dtype=F64)
    )
    if mu.shape != (dim,) or s.shape != (dim,):
        raise InvalidInputError(f"mean and cov_eigenvalues must have shape ({dim},)")
    if bool((s <= 0).any()):
        raise InvalidInputError("cov_eigenvalues must be > 0 (the flow map is singular for degenerate data)")
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
    cov = q @ torch.diag(s) @ q.T
    cov = 0.5 * (cov + cov.T)
    data = GaussianData(mu, cov)
    ts_default, te_default = gaussian_interval(path, for_exponential)
    ts = ts_default if t_start is None else float(t_start)
    te = te_default if t_end is None else float(t_end)
    c_start = data.marginal_cov_eigenvalues(ts, path)
    z = torch.randn(batch, dim, generator=g, dtype=F64) * c_start.sqrt()
    basis = data.eigenvectors if data.eigenvectors is not None else torch.eye(dim, dtype=F64)
    x1 = float(path.alpha(ts)) * mu + z @ basis.T
    flow = data.field(path)

    def solution(t: float) -> torch.Tensor:
        return data.flow_map(x1, ts, t, path)

    return Problem(
        name=f"gaussian_flow_{path.name}",
        field=flow,
        x1=x1,
        solution=solution,
        t_start=ts,
        t_end=te,
        grid_kind="log_snr" if for_exponential else "uniform",
        path=path,
        params={"path": path, "mean": mu, "cov_eigenvalues": s, "seed": seed},
    )


class _IsotropicMixtureFlow(ProbabilityFlow):
    r"""Exact PF-ODE field of a mixture $\sum_k w_k N(\mu_k, s_k I)$ on a path (every prediction kind).

    Component $k$ of the marginal is $N(\alpha\mu_k, c_k I)$ with $c_k = \alpha^2 s_k + \sigma^2$;
    responsibilities $r_k \propto w_k c_k^{-d/2}\exp(-|x - \alpha\mu_k|^2 / 2c_k)$ (log-sum-exp);
    $\mathbb E[x_0|x] = \sum_k r_k\big(\mu_k + \tfrac{\alpha s_k}{c_k}(x - \alpha\mu_k)\big)$,
    $\hat\varepsilon = (x - \alpha\hat x_0)/\sigma$, $v = \dot\alpha\hat x_0 + \dot\sigma\hat\varepsilon$,
    $s = -\hat\varepsilon/\sigma$. Needs $\sigma > 0$ (interior times). Kept here, not taken from
    ``models``, because solvers never import models.
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, path: GaussianPath):
        self.path = path
        self.model = None  # type: ignore[assignment]
        self.prediction = "x0"
        self.log_w = torch.log(weights / weights.sum())
        self.means, self.variances = means, variances

    def predict_kinds(self, t: Any, x: torch.Tensor, kinds: Any) -> tuple[torch.Tensor, ...]:
        t64 = torch.as_tensor(t, dtype=F64).reshape(())
        alpha, sigma, d_alpha, d_sigma = (c.to(x.dtype) for c in self.path.coefficients(t64))
        mu, s = self.means.to(x.dtype), self.variances.to(x.dtype)
        c = alpha**2 * s + sigma**2  # (K,)
        z = x[:, None, :] - alpha * mu  # (B, K, d)
        logits = self.log_w.to(x.dtype) - 0.5 * x.shape[1] * torch.log(c) - 0.5 * (z * z).sum(-1) / c
        r = torch.softmax(logits, dim=1)  # (B, K)
        x0 = (r[:, :, None] * (mu + (alpha * s / c)[:, None] * z)).sum(1)
        eps = (x - alpha * x0) / sigma
        table = {"x0": x0, "epsilon": eps, "velocity": d_alpha * x0 + d_sigma * eps, "score": -eps / sigma}
        return tuple(table[k] for k in kinds)

    def __repr__(self) -> str:
        return f"IsotropicMixtureFlow(components={len(self.means)}, path={self.path!r})"


def mixture_flow_problem(
    path: GaussianPath | None = None,
    *,
    dim: int = 2,
    batch: int = 3,
    components: int = 3,
    seed: int = 0,
    for_exponential: bool = True,
    rtol: float = 1e-12,
) -> Problem:
    r"""The exact PF-ODE of a Gaussian *mixture* (isotropic components, variances in $[0.15, 0.4]$,
    means in $[-1.5, 1.5]^d$) on ``path`` — a non-linear field, unlike `gaussian_flow_problem`
    whose linear structure lets some multistep exponential integrators converge one order
    faster than they do on real data (DPM-Solver++ 3M measures 4 there, 3 here).

    No closed form exists: ``exact(t)`` is scipy's ``solve_ivp`` (DOP853, ``rtol = atol =``
    ``rtol``) on the flattened batch, cached per time — independent of every solver in this
    library. The reference floor is ~1e-11, so ``Problem.floor`` is set to 1e-10.
    """
    from scipy.integrate import solve_ivp  # noqa: PLC0415 - only this problem needs scipy

    path = VPPath() if path is None else path
    _check_batch_dim(batch, dim)
    check_positive(components, "components", integer=True)
    g = _generator(seed)
    means = 3.0 * torch.rand(components, dim, generator=g, dtype=F64) - 1.5
    variances = 0.15 + 0.25 * torch.rand(components, generator=g, dtype=F64)
    weights = 0.5 + torch.rand(components, generator=g, dtype=F64)
    flow = _IsotropicMixtureFlow(weights, means, variances, path)
    ts, te = gaussian_interval(path, for_exponential)
    spread = float(variances.mean() + means.pow(2).mean())
    scale = math.sqrt(float(path.alpha(ts)) ** 2 * spread + float(path.sigma(ts)) ** 2)
    x1 = scale * torch.randn(batch, dim, generator=g, dtype=F64)
    cache: dict[float, torch.Tensor] = {ts: x1}

    def rhs(t: float, y: Any) -> Any:
        return flow(torch.tensor(t, dtype=F64), torch.from_numpy(y).reshape(batch, dim)).reshape(-1).numpy()

    def solution(t: float) -> torch.Tensor:
        if t not in cache:
            out = solve_ivp(rhs, (ts, t), x1.reshape(-1).numpy(), method="DOP853", rtol=rtol, atol=rtol)
            if not out.success:
                raise InvalidInputError(f"the reference solve of the mixture flow failed: {out.message}")
            cache[t] = torch.from_numpy(out.y[:, -1].copy()).reshape(batch, dim)
        return cache[t]

    return Problem(
        name=f"mixture_flow_{path.name}",
        field=flow,
        x1=x1,
        solution=solution,
        t_start=ts,
        t_end=te,
        grid_kind="log_snr" if for_exponential else "uniform",
        path=path,
        params={"path": path, "components": components, "seed": seed},
        floor=1e-10,
    )


# --------------------------------------------------------------------------------------------
# SDE problems with exact pathwise solutions
# --------------------------------------------------------------------------------------------
class GridBrownianPath:
    r"""A Brownian path known exactly at the points of a fine grid: ``bp(t0, t1) = W(t1) - W(t0)``.

    Built by `SDEProblem.sample`; every coarser grid whose points lie on the fine grid sees
    increments that are sums of the fine ones, so one path serves a whole refinement
    sweep (strong-order tests). Asking for a time off the fine grid raises
    `InvalidInputError` (the exact solution is only known on the grid). Increments have
    shape ``(batch, dim)`` and the dtype of ``x1``; decreasing time gives
    $W(t_1) - W(t_0)$ with $t_1 < t_0$, whose variance is $|t_1 - t_0|$.
    """

    def __init__(self, times: list[float], w: torch.Tensor) -> None:
        self.times = times
        self.w = w
        self._index = {t: i for i, t in enumerate(times)}
        self.shape = tuple(w.shape[1:])
        self.dtype = w.dtype
        self.device = w.device

    def _idx(self, t: float | torch.Tensor) -> int:
        t = float(t)
        i = self._index.get(t)
        if i is None:
            k = min(range(len(self.times)), key=lambda j: abs(self.times[j] - t))
            if abs(self.times[k] - t) > 1e-12:
                raise InvalidInputError(
                    f"this test Brownian path is known only on its grid of {len(self.times) - 1} steps; "
                    f"t = {t!r} is not a grid point (sub-step Brownian queries are not supported by the check)"
                )
            i = k
        return i

    def __call__(self, t0: float | torch.Tensor, t1: float | torch.Tensor) -> torch.Tensor:
        return self.w[self._idx(t1)] - self.w[self._idx(t0)]

    def to(self, dtype: torch.dtype) -> GridBrownianPath:
        return GridBrownianPath(self.times, self.w.to(dtype))

    def __repr__(self) -> str:
        return f"GridBrownianPath(steps={len(self.times) - 1}, shape={self.shape})"


class _ScalarSDE:
    """``dx = a x dt + (b or c x) dW`` with constant scalar coefficients."""

    def __init__(self, a: float, b: float, multiplicative: bool) -> None:
        self.a, self.b, self.multiplicative = a, b, multiplicative
        self.noise_type = "diagonal" if multiplicative else "additive"

    def drift(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.a * x

    def diffusion(self, t: float | torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        if self.multiplicative:
            return self.b * x
        like = x if x is not None else torch.empty((), dtype=F64)
        return torch.full((), self.b, dtype=like.dtype, device=like.device)

    def __repr__(self) -> str:
        noise = f"{self.b:g}·x" if self.multiplicative else f"{self.b:g}"
        return f"dx = {self.a:g}·x dt + {noise} dW"


@dataclass(frozen=True)
class SDESample:
    """One draw of a `SDEProblem`: the fine Brownian path and the exact solution on its grid."""

    brownian: GridBrownianPath
    grid: torch.Tensor
    exact: torch.Tensor  # (n_fine + 1, batch, dim) exact states at the grid points


@dataclass(frozen=True, eq=False)
class SDEProblem:
    r"""A scalar linear SDE with an exact solution coupled to its Brownian path.

    In the stepping direction ($\tau = |t - t_{start}|$, $B(\tau) = W(t) - W(t_{start})$)
    the problem is $dX = \kappa X\,d\tau + b\,dB$ (``noise="additive"``) or
    $dX = \kappa X\,d\tau + c X\,dB$ (``"multiplicative"``, Itô), with $\kappa$ = ``rate``;
    the drift handed to the solver is $a = \kappa\,\mathrm{sign}(t_{end} - t_{start})$ so that
    $X$ decays along the solve for $\kappa < 0$. Exact solutions:

    - additive: $X(\tau_{k+1}) = e^{\kappa h}X(\tau_k) + b\,J_k$ with
      $J_k = \int e^{\kappa(\tau_{k+1} - u)}dB(u)$ sampled *jointly* with $\Delta B_k$
      (a 2-d Gaussian: $\mathrm{Var}\,J = (e^{2\kappa h} - 1)/2\kappa$,
      $\mathrm{Cov}(\Delta B, J) = (e^{\kappa h} - 1)/\kappa$) — exact on the grid;
    - multiplicative (geometric Brownian motion): $X = X_0\exp((\kappa - c^2/2)\tau + c B(\tau))$.

    Moments for weak errors follow from the same pathwise truth. ``x1`` has shape
    ``(samples, dim)``; each entry is an independent scalar path.
    """

    name: str
    sde: _ScalarSDE
    x1: torch.Tensor
    rate: float
    noise_scale: float
    noise: str
    t_start: float = 1.0
    t_end: float = 0.0

    @property
    def direction(self) -> float:
        return 1.0 if self.t_end > self.t_start else -1.0

    def grid(self, n: int) -> torch.Tensor:
        return time_grid(n, "uniform", self.t_start, self.t_end)

    def sample(self, n_fine: int, seed: int = 0, dtype: torch.dtype = F64) -> SDESample:
        """A Brownian path on the uniform grid of ``n_fine`` steps and the exact states there."""
        check_positive(n_fine, "n_fine", integer=True)
        grid = self.grid(n_fine)
        h = abs(self.t_end - self.t_start) / n_fine
        shape = tuple(self.x1.shape)
        g = _generator(seed)
        z = torch.randn(n_fine, 2, *shape, generator=g, dtype=F64)
        k, b = self.rate, self.noise_scale
        if self.noise == "additive":
            var_j = h if k == 0 else math.expm1(2 * k * h) / (2 * k)
            cov_bj = h if k == 0 else math.expm1(k * h) / k
            l11 = math.sqrt(h)
            l21 = cov_bj / l11
            l22 = math.sqrt(max(var_j - l21 * l21, 0.0))
            dB = l11 * z[:, 0]
            J = l21 * z[:, 0] + l22 * z[:, 1]
            xs = [self.x1]
            decay = math.exp(k * h)
            for i in range(n_fine):
                xs.append(decay * xs[-1] + b * J[i])
            exact = torch.stack(xs)
        else:
            dB = math.sqrt(h) * z[:, 0]
            B = torch.cat([torch.zeros(1, *shape, dtype=F64), torch.cumsum(dB, 0)])
            tau = torch.arange(n_fine + 1, dtype=F64).reshape(-1, *([1] * len(shape))) * h
            exact = self.x1 * torch.exp((k - 0.5 * b * b) * tau + b * B)
        W = torch.cat([torch.zeros(1, *shape, dtype=F64), torch.cumsum(dB, 0)])
        bp = GridBrownianPath(grid.tolist(), W.to(dtype))
        return SDESample(brownian=bp, grid=grid, exact=exact)

    def __repr__(self) -> str:
        return (
            f"{self.name}({self.sde!r}; samples={self.x1.shape[0]}, dim={self.x1.shape[1]}, "
            f"t: {self.t_start:g} -> {self.t_end:g})"
        )


def linear_sde_problem(
    rate: float = -1.0,
    noise_scale: float = 0.5,
    *,
    samples: int = 2000,
    dim: int = 1,
    x_start: float = 1.0,
    t_start: float = 1.0,
    t_end: float = 0.0,
) -> SDEProblem:
    r"""Additive-noise linear SDE $dX = \kappa X\,d\tau + b\,dB$ (an Ornstein–Uhlenbeck process in the
    stepping direction), the noise structure of every reverse SDE of a Gaussian path.
    Euler–Maruyama and stochastic Heun have strong order 1 on it."""
    check_positive(samples, "samples", integer=True)
    d = 1.0 if t_end > t_start else -1.0
    return SDEProblem(
        name="linear_sde_additive",
        sde=_ScalarSDE(rate * d, noise_scale, multiplicative=False),
        x1=torch.full((samples, dim), float(x_start), dtype=F64),
        rate=float(rate),
        noise_scale=float(noise_scale),
        noise="additive",
        t_start=t_start,
        t_end=t_end,
    )


def gbm_problem(
    rate: float = -0.5,
    volatility: float = 0.8,
    *,
    samples: int = 2000,
    dim: int = 1,
    x_start: float = 1.0,
    t_start: float = 1.0,
    t_end: float = 0.0,
) -> SDEProblem:
    r"""Geometric Brownian motion $dX = \kappa X\,d\tau + cX\,dB$ (Itô, multiplicative noise):
    Euler–Maruyama has strong order ½ on it."""
    check_positive(samples, "samples", integer=True)
    d = 1.0 if t_end > t_start else -1.0
    return SDEProblem(
        name="gbm_multiplicative",
        sde=_ScalarSDE(rate * d, volatility, multiplicative=True),
        x1=torch.full((samples, dim), float(x_start), dtype=F64),
        rate=float(rate),
        noise_scale=float(volatility),
        noise="multiplicative",
        t_start=t_start,
        t_end=t_end,
    )


# --------------------------------------------------------------------------------------------
# default sets used by the assertions and check_solver
# --------------------------------------------------------------------------------------------
@functools.cache
def _default_problems(kind: str) -> tuple[Problem, ...]:
    if kind == "exponential":
        return tuple(
            mixture_flow_problem(p, dim=2, batch=3, components=3, seed=i)
            for i, p in enumerate((VPPath(), LinearPath(), CosinePath()))
        )
    return (
        linear_problem(3, "well_conditioned", rates=[-1.5, 2.5, 3.0], seed=1),
        linear_problem(4, "rotational", rates=[2.5, 4.0], seed=2),
        linear_problem(3, "mildly_stiff", seed=3),
        logistic_problem(2.0, seed=4),
        gaussian_flow_problem(LinearPath(), dim=2, seed=6),
    )


def default_problems(kind: str = "ode") -> list[Problem]:
    r"""The fixed problem set on which `assert_order` measures orders (built once per process).

    ``"ode"``: a well-conditioned linear system (eigenvalues −1.5, 2.5, 3: one mode grows
    towards t = 0), a rotational one (frequencies 2.5 and 4), a mildly stiff one, the logistic
    equation ($r = 2$) and the Gaussian PF-ODE on the linear path (non-autonomous). The rates
    are high enough that the asymptotic range lies above the float64 floor even for order 5 at
    8–128 steps. Scalar problems such as Riccati are left out on purpose: a single trajectory
    whose local error changes sign has a near-cancelling global error constant and a long
    pre-asymptotic range.

    ``"exponential"``: the PF-ODE of a three-component Gaussian mixture (`mixture_flow_problem`)
    on the VP, linear and cosine paths, over $|\lambda| \le 4$ on log-SNR-uniform grids. Not
    single Gaussians: their linear PF-ODE makes DPM-Solver++ 3M converge at order 4.
    """
    check_choice(kind, ("ode", "exponential"), "problem kind")
    return list(_default_problems(kind))


def reversible_problems(kind: str = "ode") -> list[Problem]:
    """Non-stiff problems that are well posed in both time directions (for the reversal check)."""
    check_choice(kind, ("ode", "exponential"), "problem kind")
    if kind == "exponential":
        return [
            gaussian_flow_problem(p, dim=2, batch=3, seed=10 + i, for_exponential=True)
            for i, p in enumerate((LinearPath(), VPPath()))
        ]
    return [
        linear_problem(3, "well_conditioned", rates=[1.0, 1.5, 2.0], seed=11),
        riccati_problem(1.0, seed=12, margin=0.5),
    ]


def default_sde_problems() -> list[SDEProblem]:
    """The additive-noise linear SDE (strong and weak orders of `check_solver`)."""
    return [linear_sde_problem()]
