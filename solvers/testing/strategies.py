"""Hypothesis strategies for solver properties: problems, Gaussian paths, grids, batched states.

Every strategy generates only valid cases (bounded spectra and conditioning, no overflow, no
poles on the interval), float64 by default, and shrinks towards small readable ones (dimension
1, batch 1, the smallest rates, seed 0, the linear path). Arguments take either a value or a
strategy, so ``linear_problems(dim=2)`` and ``linear_problems(dim=st.integers(2, 6))`` both work.
Drawing is cheap (a few small float64 tensors); 100 examples per property in well under a
second of generation.

```python
from hypothesis import given
from solvers.testing import strategies as sst

@given(problem=sst.linear_problems(), grid=sst.grids(4, 32))
def test_something(problem, grid): ...
```
"""

from __future__ import annotations

import math
from typing import Any

import torch

try:
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
except ImportError as exc:  # pragma: no cover - exercised only without the dev extra
    raise ImportError(
        "solvers.testing.strategies needs hypothesis: pip install hypothesis (or pip install 'odeflow[dev]'); "
        "the problems, assertions and check_solver work without it"
    ) from exc

from odeflow.errors import InvalidInputError
from odeflow.paths import CosinePath, GaussianPath, LinearPath, VEPath, VPPath
from solvers.testing.problems import (
    LINEAR_VARIANTS,
    Problem,
    SDEProblem,
    gaussian_flow_problem,
    gaussian_interval,
    gbm_problem,
    linear_problem,
    linear_sde_problem,
    logistic_problem,
    polynomial_problem,
    riccati_problem,
)
from solvers.testing.timegrid import GRID_KINDS, time_grid

__all__ = [
    "linear_problems",
    "scalar_problems",
    "polynomial_problems",
    "gaussian_paths",
    "gaussian_flow_problems",
    "ode_problems",
    "sde_problems",
    "grids",
    "batched_states",
]

F64 = torch.float64
_SEEDS = st.integers(0, 2**16 - 1)
# default strategies (module-level so that the defaults are built once)
_INT_1_4 = st.integers(1, 4)
_INT_1_3 = st.integers(1, 3)
_INT_0_4 = st.integers(0, 4)
_LINEAR_VARIANTS = st.sampled_from(LINEAR_VARIANTS)
_SCALAR_KINDS = st.sampled_from(("logistic", "riccati"))
_NOISES = st.sampled_from(("additive", "multiplicative"))
_GRID_KINDS = st.sampled_from(("uniform", "random", "quadratic"))


def _st(value: Any) -> SearchStrategy:
    return value if isinstance(value, SearchStrategy) else st.just(value)


def _floats(lo: float, hi: float) -> SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def linear_problems(
    draw: Any,
    dim: int | SearchStrategy[int] = _INT_1_4,
    stiffness: str | SearchStrategy[str] = _LINEAR_VARIANTS,
    batch: int | SearchStrategy[int] = _INT_1_3,
    dtype: torch.dtype = F64,
) -> Problem:
    """Random linear systems $y' = Ay$ (`solvers.testing.problems.linear_problem`).

    ``stiffness``: ``"well_conditioned"`` (real eigenvalues $\\pm[0.2, 1]$), ``"rotational"``
    (skew-symmetric, frequencies $[0.5, 3]$, even dimension) or ``"mildly_stiff"`` (eigenvalues
    in $[0.5, 10]$, the largest $\\ge 5$, decaying towards $t = 0$). The spectrum is drawn by
    hypothesis (shrinking to its lower end), the eigenbasis (condition number $\\le 2$) and
    ``x1`` from a seed.
    """
    d, variant, b = draw(_st(dim)), draw(_st(stiffness)), draw(_st(batch))
    if variant not in LINEAR_VARIANTS:
        raise InvalidInputError(f"unknown stiffness {variant!r}; valid values are: {', '.join(LINEAR_VARIANTS)}")
    # drawn for every variant so that no variant shrinks "smaller" than the well-conditioned one
    signs = draw(st.lists(st.booleans(), min_size=d, max_size=d))  # True: the mode grows towards t = 0
    if variant == "rotational":
        rates = draw(st.lists(_floats(0.5, 3.0), min_size=(d + 1) // 2, max_size=(d + 1) // 2))
    elif variant == "well_conditioned":
        rates = draw(st.lists(_floats(0.2, 1.0), min_size=d, max_size=d))
        rates = [-r if neg else r for r, neg in zip(rates, signs)]
    else:
        rates = [draw(_floats(5.0, 10.0))] + draw(st.lists(_floats(0.5, 10.0), min_size=d - 1, max_size=d - 1))
    return linear_problem(d, variant, rates=rates, batch=b, seed=draw(_SEEDS)).to(dtype)


@st.composite
def scalar_problems(
    draw: Any,
    kind: str | SearchStrategy[str] = _SCALAR_KINDS,
    batch: int | SearchStrategy[int] = _INT_1_4,
    dtype: torch.dtype = F64,
) -> Problem:
    r"""Scalar nonlinear problems with closed forms, elementwise over a batch of start values:
    logistic $y' = r y(1 - y)$ ($r \in [0.5, 4]$, $y_1 \in [0.05, 0.95]$) or Riccati
    $y' = a(1 + y^2)$ ($a \in [0.3, 1.5]$, start values keeping the $\tan$ solution 0.35 away
    from its poles)."""
    k, b = draw(_st(kind)), draw(_st(batch))
    if k == "logistic":
        rate = draw(_floats(0.5, 4.0))
        y1 = draw(st.lists(_floats(0.05, 0.95), min_size=b, max_size=b))
        return logistic_problem(rate, y1=y1).to(dtype)
    if k == "riccati":
        a, margin = draw(_floats(0.3, 1.5)), 0.35
        lo, hi = -math.pi / 2 + margin + a, math.pi / 2 - margin
        mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        fr = draw(st.lists(_floats(-0.99, 0.99), min_size=b, max_size=b))
        return riccati_problem(a, y1=[math.tan(mid + half * f) for f in fr], margin=margin).to(dtype)
    raise InvalidInputError(f"unknown scalar problem {k!r}; valid kinds are: 'logistic', 'riccati'")


@st.composite
def polynomial_problems(
    draw: Any,
    degree: int | SearchStrategy[int] = _INT_0_4,
    dim: int | SearchStrategy[int] = _INT_1_3,
    batch: int | SearchStrategy[int] = _INT_1_3,
    dtype: torch.dtype = F64,
) -> Problem:
    """$y' = p(t)$ with a solution polynomial of degree ``degree``; coefficients in $[-2, 2]$
    (shrinking to 0)."""
    deg, d, b = draw(_st(degree)), draw(_st(dim)), draw(_st(batch))
    coef = draw(st.lists(_floats(-2.0, 2.0), min_size=deg * d, max_size=deg * d))
    c = torch.tensor(coef, dtype=F64).reshape(deg, d)
    return polynomial_problem(deg, dim=d, batch=b, coefficients=c, seed=draw(_SEEDS)).to(dtype)


def gaussian_paths(
    names: tuple[str, ...] = ("linear", "vp", "cosine", "ve"), vary_parameters: bool = True
) -> SearchStrategy[GaussianPath]:
    r"""Gaussian paths: `LinearPath`, `VPPath` ($\beta_{\min} \in [0.05, 0.5]$,
    $\beta_{\max} \in [5, 20]$), `CosinePath`, `VEPath` ($\sigma_{\min} \in [0.005, 0.05]$,
    $\sigma_{\max} \in [10, 80]$); shrinks to `LinearPath`. ``vary_parameters=False`` gives the
    default instances only."""
    options = {
        "linear": st.just(LinearPath()),
        "vp": st.builds(VPPath, beta_min=_floats(0.05, 0.5), beta_max=_floats(5.0, 20.0))
        if vary_parameters
        else st.just(VPPath()),
        "cosine": st.just(CosinePath()),
        "ve": st.builds(VEPath, sigma_min=_floats(0.005, 0.05), sigma_max=_floats(10.0, 80.0))
        if vary_parameters
        else st.just(VEPath()),
    }
    bad = [n for n in names if n not in options]
    if bad or not names:
        raise InvalidInputError(f"unknown path names {bad}; valid names are: {', '.join(options)}")
    return st.one_of(*(options[n] for n in names))


@st.composite
def gaussian_flow_problems(
    draw: Any,
    path: GaussianPath | SearchStrategy[GaussianPath] | None = None,
    dim: int | SearchStrategy[int] = _INT_1_3,
    batch: int | SearchStrategy[int] = _INT_1_3,
    for_exponential: bool = False,
    dtype: torch.dtype = F64,
) -> Problem:
    r"""The exact PF-ODE of Gaussian data on a path (`gaussian_flow_problem`): mean in $[-1, 1]^d$,
    covariance eigenvalues in $[0.25, 2]$ (shrinking to 0 and 0.25), ``x1`` a sample of the
    marginal at the start. ``for_exponential=True``: the interval where $|\lambda| \le 4$ and
    log-SNR grids (`gaussian_interval`)."""
    p = draw(_st(path if path is not None else gaussian_paths()))
    d, b = draw(_st(dim)), draw(_st(batch))
    mean = draw(st.lists(_floats(-1.0, 1.0), min_size=d, max_size=d))
    evs = draw(st.lists(_floats(0.25, 2.0), min_size=d, max_size=d))
    return gaussian_flow_problem(
        p,
        dim=d,
        batch=b,
        mean=torch.tensor(mean, dtype=F64),
        cov_eigenvalues=torch.tensor(evs, dtype=F64),
        seed=draw(_SEEDS),
        for_exponential=for_exponential,
    ).to(dtype)


def ode_problems(dtype: torch.dtype = F64) -> SearchStrategy[Problem]:
    """Any ODE problem: linear, scalar nonlinear or Gaussian PF-ODE."""
    return st.one_of(linear_problems(dtype=dtype), scalar_problems(dtype=dtype), gaussian_flow_problems(dtype=dtype))


@st.composite
def sde_problems(
    draw: Any,
    noise: str | SearchStrategy[str] = _NOISES,
    samples: int | SearchStrategy[int] = 256,
) -> SDEProblem:
    r"""Scalar linear SDEs with exact pathwise solutions: additive noise ($\kappa \in [-2, 0.5]$,
    $b \in [0.1, 1]$) or geometric Brownian motion ($\kappa \in [-1, 0.5]$, $c \in [0.1, 1]$)."""
    kind, m = draw(_st(noise)), draw(_st(samples))
    if kind == "additive":
        return linear_sde_problem(draw(_floats(-2.0, 0.5)), draw(_floats(0.1, 1.0)), samples=m)
    if kind == "multiplicative":
        return gbm_problem(draw(_floats(-1.0, 0.5)), draw(_floats(0.1, 1.0)), samples=m)
    raise InvalidInputError(f"unknown noise {kind!r}; valid values are: 'additive', 'multiplicative'")


@st.composite
def grids(
    draw: Any,
    min_steps: int = 1,
    max_steps: int = 64,
    kind: str | SearchStrategy[str] = _GRID_KINDS,
    t_start: float = 1.0,
    t_end: float = 0.0,
    path: GaussianPath | SearchStrategy[GaussianPath] | None = None,
) -> torch.Tensor:
    """Strictly monotone float64 grids of ``min_steps``..``max_steps`` steps from ``t_start`` to
    ``t_end`` (`solvers.testing.timegrid.time_grid`). ``"random"`` grids have step ratios
    ≤ 3. A ``"log_snr"`` grid needs finite log-SNR at its ends: without ``path`` one is drawn,
    and the ends become that path's `gaussian_interval`."""
    if not 1 <= min_steps <= max_steps:
        raise InvalidInputError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    n = draw(st.integers(min_steps, max_steps))
    k = draw(_st(kind))
    if k not in GRID_KINDS:
        raise InvalidInputError(f"unknown grid kind {k!r}; valid kinds are: {', '.join(GRID_KINDS)}")
    p = None
    ts, te = t_start, t_end
    if k == "log_snr":
        p = draw(_st(path if path is not None else gaussian_paths()))
        if path is None:
            ts, te = gaussian_interval(p, for_exponential=True)
    return time_grid(n, k, ts, te, path=p, seed=draw(_SEEDS))


@st.composite
def batched_states(
    draw: Any,
    batch: int | SearchStrategy[int] = _INT_1_4,
    dims: tuple[int | SearchStrategy[int], ...] = (_INT_1_4,),
    dtype: torch.dtype = F64,
    scale: float = 2.0,
) -> torch.Tensor:
    """States of shape ``(batch, *dims)`` with entries in ``[-scale, scale]`` (finite, shrinking to 0)."""
    shape = (draw(_st(batch)), *(draw(_st(d)) for d in dims))
    numel = math.prod(shape)
    width = 32 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 64
    values = draw(st.lists(st.floats(-scale, scale, allow_nan=False, width=width), min_size=numel, max_size=numel))
    return torch.tensor(values, dtype=F64).reshape(shape).to(dtype)
