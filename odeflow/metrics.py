r"""Metrics for trajectories, endpoints and sample distributions, and fitted convergence orders.

Everything here takes tensors (and, for densities, callables) and returns Python floats; it
never imports a solver or a model (DESIGN.md §2). Computations run in float64 whatever the
input dtype. Conventions: $t = 0$ is data, $t = 1$ noise, so a trajectory's *data end* is
$x_0$ and its *noise end* $x_1$; a velocity $v = dx/dt$ points from data towards noise.

**Trajectory geometry** (Liu et al. 2022, *Flow straight and fast*, eq. 3): for trajectories
$x_t$ of the flow $\dot x = v(x, t)$,

* straightness $S = \int_0^1 \mathbb E\,\lVert (x_1 - x_0) - v(x_t, t)\rVert^2\,dt$ — zero iff
  every trajectory is a straight segment traversed at constant speed; `straightness`;
* normalised straightness $S / \mathbb E\lVert x_1 - x_0\rVert^2$ (scale-free);
  `normalized_straightness`;
* path-length ratio $\mathbb E\!\int_0^1\lVert v\rVert\,dt \,/\, \mathbb E\lVert x_1 - x_0\rVert$ — a
  ratio of means (per-sample ratios are heavy-tailed: a trajectory with $x_1 \approx x_0$ has an
  unbounded ratio); $\ge 1$, $= 1$ iff the curves are straight and never turn back;
  `path_length_ratio`.

$S$ depends on the time parameterisation (a straight segment run at varying speed has
$S > 0$); the path-length ratio is a property of the curves alone.

**Endpoints**: `endpoint_rmse` (root mean square over all entries), `endpoint_max_error`.

**Distributions** (samples $x \sim q$ against samples $y \sim p$ or a log-density $\log p$):
`sliced_w2`, `energy_distance`, `mean_nll`, `kl_estimate`. Every one of them is biased at
finite sample size; `sample_size_floor` measures the same metric between independent samples
of the *target* itself (for `mean_nll` that is the target's entropy, for the others the value
a perfect sampler would score), and a study reports that floor beside each value.

**Orders**: `fit_order(nfe, err)` fits $\log\text{err} = c - p\log\text{NFE}$ by least squares on
the asymptotic range (floor and stalled points dropped) and returns $p$ with its standard error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from odeflow._checks import check_positive
from odeflow.errors import InvalidInputError

__all__ = [
    "gauss_legendre",
    "trapezoid_weights",
    "straightness",
    "normalized_straightness",
    "path_length_ratio",
    "endpoint_rmse",
    "endpoint_max_error",
    "sliced_w2",
    "energy_distance",
    "mean_nll",
    "knn_entropy",
    "kl_estimate",
    "sample_size_floor",
    "Floor",
    "OrderFit",
    "fit_order",
    "local_orders",
]

LogProb = Callable[[torch.Tensor], torch.Tensor]
Sampler = Callable[[int, int], torch.Tensor]


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _tensor(x: object, name: str, min_dim: int = 1) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise InvalidInputError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise InvalidInputError(f"{name} must have at least {min_dim} dimension(s), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise InvalidInputError(f"{name} is empty")
    x = x.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return x


def _samples(x: object, name: str) -> torch.Tensor:
    """Samples as a float64 ``(n, d)`` tensor (trailing dims flattened)."""
    x = _tensor(x, name)
    if x.dim() == 1:
        x = x[:, None]
    return x.reshape(x.shape[0], -1)


def _pair(x: object, y: object, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _samples(x, names[0]), _samples(y, names[1])
    if a.shape[1] != b.shape[1]:
        raise InvalidInputError(
            f"{names[0]} has {a.shape[1]} coordinates per sample but {names[1]} has {b.shape[1]}; they must match"
        )
    return a, b.to(a.device)


# --------------------------------------------------------------------------------------------
# quadrature
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import roots_legendre  # noqa: PLC0415 (scipy is a dependency; keep import local)

    nodes, weights = roots_legendre(n)
    return nodes, weights


def gauss_legendre(n: int, a: float = 0.0, b: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Gauss–Legendre nodes and weights on $[a, b]$ (float64): exact for polynomials of degree $2n-1$.

    The nodes are interior, so a field that is singular *at* $t = 0$ (e.g. $\dot\sigma$ of the VP
    path) is never evaluated there. Nodes are returned increasing. (scipy's ``roots_legendre``,
    cached per ``n``.)
    """
    check_positive(n, "n", integer=True)
    nodes, weights = _legendre(n)
    half = 0.5 * (b - a)
    t = torch.tensor(a + half * (nodes + 1.0), dtype=torch.float64)
    w = torch.tensor(half * weights, dtype=torch.float64)
    return t, w


def trapezoid_weights(ts: torch.Tensor) -> torch.Tensor:
    r"""Trapezoid weights $w_k$ with $\sum_k w_k f(t_k) \approx \int f\,dt$ over the span of ``ts``.

    ``ts`` is strictly monotone in either direction; the weights are positive (they integrate
    over $|dt|$) and sum to $|t_{\text{last}} - t_{\text{first}}|$.
    """
    t = _tensor(ts, "ts")
    if t.dim() != 1 or t.numel() < 2:
        raise InvalidInputError(f"ts must be 1-d with at least 2 times, got shape {tuple(t.shape)}")
    d = (t[1:] - t[:-1]).abs()
    diffs = t[1:] - t[:-1]
    if not (bool((diffs > 0).all()) or bool((diffs < 0).all())):
        raise InvalidInputError("ts must be strictly monotone")
    w = torch.zeros_like(t)
    w[:-1] += 0.5 * d
    w[1:] += 0.5 * d
    return w


# --------------------------------------------------------------------------------------------
# trajectory geometry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Trajectory:
    x0: torch.Tensor  # (B, D) data end
    x1: torch.Tensor  # (B, D) noise end
    xs: torch.Tensor  # (T, B, D)
    vs: torch.Tensor | None  # (T, B, D)
    w: torch.Tensor  # (T,)


def _trajectory(
    ts: torch.Tensor,
    xs: torch.Tensor,
    vs: torch.Tensor | None,
    x0: torch.Tensor | None,
    x1: torch.Tensor | None,
    weights: torch.Tensor | None,
) -> _Trajectory:
    t = _tensor(ts, "ts")
    if t.dim() != 1:
        raise InvalidInputError(f"ts must be 1-d, got shape {tuple(t.shape)}")
    x = _tensor(xs, "xs", min_dim=2)
    if x.shape[0] != t.numel():
        raise InvalidInputError(f"xs has {x.shape[0]} time slices but ts has {t.numel()} times; they must match")
    x = x.reshape(x.shape[0], x.shape[1], -1)
    v = None
    if vs is not None:
        v = _tensor(vs, "vs", min_dim=2)
        if v.numel() != x.numel() or v.shape[:2] != x.shape[:2]:
            raise InvalidInputError(f"vs has shape {tuple(vs.shape)}; it must match xs {tuple(xs.shape)}")
        v = v.reshape(x.shape)
    if weights is None:
        w = trapezoid_weights(t)
    else:
        w = _tensor(weights, "weights")
        if w.shape != t.shape:
            raise InvalidInputError(f"weights has shape {tuple(w.shape)}; it must match ts {tuple(t.shape)}")
    lo, hi = int(torch.argmin(t)), int(torch.argmax(t))
    if (x0 is None or x1 is None) and weights is not None:
        raise InvalidInputError(
            "with explicit quadrature weights (e.g. Gauss-Legendre nodes) pass the endpoints x0= and x1= too"
        )
    e0 = x[lo] if x0 is None else _tensor(x0, "x0").reshape(x.shape[1], -1)
    e1 = x[hi] if x1 is None else _tensor(x1, "x1").reshape(x.shape[1], -1)
    if e0.shape != x.shape[1:] or e1.shape != x.shape[1:]:
        raise InvalidInputError(f"x0 and x1 must be shaped like one time slice of xs {tuple(xs.shape[1:])}")
    return _Trajectory(e0, e1, x, v, w)


def straightness(
    ts: torch.Tensor,
    xs: torch.Tensor,
    vs: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    x1: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> float:
    r"""Straightness $S = \int \mathbb E\,\lVert (x_1 - x_0) - v(x_t, t)\rVert^2\,dt$ (Liu et al. 2022).

    ``ts`` (T,) are times, ``xs`` (T, B, \*dims) the states of B trajectories at those times and
    ``vs`` the velocities $v(x_t, t) = dx/dt$ there. The integral runs over the span of ``ts``
    with trapezoid weights unless ``weights`` are given (then also give the endpoints ``x0``
    (data end, $t = 0$) and ``x1`` (noise end, $t = 1$), e.g. with `gauss_legendre` nodes);
    by default the endpoints are the states at the smallest and largest time. The expectation
    is the mean over the batch; $\lVert\cdot\rVert$ is the Euclidean norm over all trailing dims.

    Closed forms: Dirac data on the linear path gives $S = 0$; data $N(0, s^2 I)$ on the linear
    path gives $S/\mathbb E\lVert x_1 - x_0\rVert^2 = 4 - \pi \approx 0.858$ at $s = 1/2$.
    """
    tr = _trajectory(ts, xs, vs, x0, x1, weights)
    if tr.vs is None:
        raise InvalidInputError("straightness needs the velocities vs")
    chord = (tr.x1 - tr.x0)[None]
    sq = ((chord - tr.vs) ** 2).sum(-1).mean(-1)  # (T,)
    return float((tr.w * sq).sum())


def normalized_straightness(
    ts: torch.Tensor,
    xs: torch.Tensor,
    vs: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    x1: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> float:
    r"""$S / \mathbb E\lVert x_1 - x_0\rVert^2$: `straightness` made scale-free (same arguments).

    Raises if every trajectory has $x_1 = x_0$ (the ratio is undefined).
    """
    tr = _trajectory(ts, xs, vs, x0, x1, weights)
    denom = float(((tr.x1 - tr.x0) ** 2).sum(-1).mean())
    if denom == 0.0:
        raise InvalidInputError("every trajectory has x1 == x0: normalised straightness is undefined")
    return straightness(ts, xs, vs, x0=x0, x1=x1, weights=weights) / denom


def path_length_ratio(
    ts: torch.Tensor,
    xs: torch.Tensor,
    vs: torch.Tensor | None = None,
    *,
    x0: torch.Tensor | None = None,
    x1: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> float:
    r"""Path-length ratio $\mathbb E\!\int\lVert v\rVert\,dt \,/\, \mathbb E\lVert x_1 - x_0\rVert$ (a ratio of means).

    With ``vs`` the length is the quadrature $\sum_k w_k\lVert v_k\rVert$; without, it is the
    polygon length $\sum_k\lVert x_{k+1} - x_k\rVert$ of the saved states in time order (a lower
    bound that converges as the trajectory is refined, and exact at a kink). The ratio is $\ge 1$
    (up to quadrature error) and equals 1 iff the curves are straight and never turn back. It
    depends on the curves only, not on how fast they are traversed.
    """
    tr = _trajectory(ts, xs, vs, x0, x1, weights)
    chord = float((tr.x1 - tr.x0).norm(dim=-1).mean())
    if chord == 0.0:
        raise InvalidInputError("every trajectory has x1 == x0: the path-length ratio is undefined")
    if tr.vs is not None:
        length = float((tr.w * tr.vs.norm(dim=-1).mean(-1)).sum())
    else:
        if weights is not None:
            raise InvalidInputError("quadrature weights need the velocities vs")
        order = torch.argsort(_tensor(ts, "ts"))
        x = tr.xs[order]
        length = float((x[1:] - x[:-1]).norm(dim=-1).sum(0).mean())
    return length / chord


# --------------------------------------------------------------------------------------------
# endpoint error
# --------------------------------------------------------------------------------------------
def endpoint_rmse(x: torch.Tensor, reference: torch.Tensor) -> float:
    r"""Root mean square error over all entries, $\sqrt{\operatorname{mean}((x - x_{\text{ref}})^2)}$.

    Per coordinate, so it does not grow with the dimension; the error measure of the
    convergence study (global error at $t = 0$ for paired starting points).
    """
    a, b = _tensor(x, "x"), _tensor(reference, "reference")
    if a.shape != b.shape:
        raise InvalidInputError(f"x has shape {tuple(a.shape)} but reference has {tuple(b.shape)}; they must match")
    return float(((a - b.to(a.device)) ** 2).mean().sqrt())


def endpoint_max_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest absolute entry-wise error $\\max|x - x_{\\text{ref}}|$."""
    a, b = _tensor(x, "x"), _tensor(reference, "reference")
    if a.shape != b.shape:
        raise InvalidInputError(f"x has shape {tuple(a.shape)} but reference has {tuple(b.shape)}; they must match")
    return float((a - b.to(a.device)).abs().max())


# --------------------------------------------------------------------------------------------
# distribution distances
# --------------------------------------------------------------------------------------------
def _w2_sq_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Exact squared $W_2$ between 1-d empirical measures, one per column: $\int_0^1 (F^{-1} - G^{-1})^2 du$."""
    a, _ = torch.sort(a, dim=0)
    b, _ = torch.sort(b, dim=0)
    n, m = a.shape[0], b.shape[0]
    if n == m:
        return ((a - b) ** 2).mean(0)
    # both quantile functions are steps; integrate over the merged breakpoints
    u = torch.unique(torch.cat([torch.arange(1, n + 1) / n, torch.arange(1, m + 1) / m]).to(torch.float64))
    du = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - 0.5 * du
    ia = torch.clamp((mid * n).long(), max=n - 1)
    ib = torch.clamp((mid * m).long(), max=m - 1)
    return (du[:, None] * (a[ia] - b[ib]) ** 2).sum(0)


def sliced_w2(x: torch.Tensor, y: torch.Tensor, *, n_projections: int = 256, seed: int = 0) -> float:
    r"""Sliced Wasserstein-2 distance $\big(\mathbb E_\theta W_2^2(\theta^\top x, \theta^\top y)\big)^{1/2}$.

    $\theta$ runs over ``n_projections`` directions drawn uniformly on the sphere from ``seed``
    (the same directions for the same seed, so values are reproducible and comparable); each 1-d
    $W_2$ between the empirical measures is exact (sorting; merged quantile steps when the
    sample sizes differ). Cost $O(P (n+m)\log(n+m))$. Floor (8 Gaussians, R = 2, sd 0.1):
    ≈ 0.115 between two data samples of n = 4000.
    """
    a, b = _pair(x, y, ("x", "y"))
    check_positive(n_projections, "n_projections", integer=True)
    g = torch.Generator().manual_seed(int(seed))
    theta = torch.randn(a.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(a.device)
    return float(_w2_sq_1d(a @ theta, b @ theta).mean().sqrt())


def _mean_pairwise_distance(a: torch.Tensor, b: torch.Tensor, *, same: bool, chunk: int = 2048) -> float:
    """Mean of ``‖a_i − b_j‖`` over all pairs (over i ≠ j when ``same``), in chunks."""
    total = 0.0
    for i in range(0, a.shape[0], chunk):
        total += float(torch.cdist(a[i : i + chunk], b).sum())
    n, m = a.shape[0], b.shape[0]
    count = n * (n - 1) if same else n * m
    if count == 0:
        raise InvalidInputError("need at least 2 samples for a within-sample distance")
    return total / count  # the diagonal of cdist(a, a) is zero, so it adds nothing


def energy_distance(x: torch.Tensor, y: torch.Tensor, *, unbiased: bool = True) -> float:
    r"""Squared energy distance $D^2 = 2E\lVert X - Y\rVert - E\lVert X - X'\rVert - E\lVert Y - Y'\rVert$.

    Székely & Rizzo (2013). $D^2 = 0$ iff the laws agree. ``unbiased=True`` uses U-statistics
    for the within-sample terms (pairs $i \ne j$): unbiased, and it **can be negative** when the
    samples agree. ``unbiased=False`` gives the V-statistic, $\ge 0$ but biased upwards by
    $O(1/n)$. Cost $O(nm\,d)$ time, chunked memory.
    """
    a, b = _pair(x, y, ("x", "y"))
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise InvalidInputError("energy_distance needs at least 2 samples of x and of y")
    xy = _mean_pairwise_distance(a, b, same=False)
    if unbiased:
        xx = _mean_pairwise_distance(a, a, same=True)
        yy = _mean_pairwise_distance(b, b, same=True)
    else:
        n, m = a.shape[0], b.shape[0]
        xx = _mean_pairwise_distance(a, a, same=True) * (n - 1) / n
        yy = _mean_pairwise_distance(b, b, same=True) * (m - 1) / m
    return 2.0 * xy - xx - yy


def _log_prob_values(x: torch.Tensor, log_prob: LogProb) -> torch.Tensor:
    if not callable(log_prob):
        raise InvalidInputError(f"log_prob must be callable as log_prob(x) -> (n,), got {type(log_prob).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.numel() == 0:
        raise InvalidInputError("x must be a non-empty tensor of samples, shape (n, *dims)")
    lp = log_prob(x)
    if not isinstance(lp, torch.Tensor) or lp.shape != (x.shape[0],):
        shape = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
        raise InvalidInputError(f"log_prob returned {shape}; it must return one value per sample, shape (n,)")
    lp = lp.detach().to(torch.float64)
    if bool(torch.isnan(lp).any()):
        raise InvalidInputError("log_prob returned NaN")
    return lp


def mean_nll(x: torch.Tensor, log_prob: LogProb) -> float:
    r"""Mean negative log-likelihood $-\frac1n\sum_i \log p(x_i)$ of samples under a known density (nats).

    For $x \sim q$ this estimates the cross-entropy $H(q, p) = H(q) + \mathrm{KL}(q\Vert p)$; its
    floor is the entropy $H(p)$ (the value for $q = p$). A sampler that collapses onto the modes
    can score *below* the floor, which is why `kl_estimate` is reported beside it.
    """
    return float(-_log_prob_values(x, log_prob).mean())


def knn_entropy(x: torch.Tensor, *, k: int = 5, chunk: int = 2048) -> float:
    r"""Kozachenko–Leonenko k-nearest-neighbour entropy estimate (nats).

    $\hat H = \psi(n) - \psi(k) + \log V_d + \frac dn\sum_i \log\rho_{i,k}$, with $\rho_{i,k}$ the
    distance from $x_i$ to its $k$-th nearest other sample and $V_d = \pi^{d/2}/\Gamma(d/2+1)$
    the volume of the unit ball (Kozachenko & Leonenko 1987; Kraskov et al. 2004). Consistent
    for continuous densities; its bias grows with the dimension (use it in low $d$). Exactly
    repeated samples give $\rho = 0$ and $\hat H = -\infty$ (a collapsed sampler).
    """
    a = _samples(x, "x")
    check_positive(k, "k", integer=True)
    n, d = a.shape
    if n <= k:
        raise InvalidInputError(f"knn_entropy needs more than k = {k} samples, got {n}")
    log_rho = torch.empty(n, dtype=torch.float64, device=a.device)
    for i in range(0, n, chunk):
        dist = torch.cdist(a[i : i + chunk], a)
        idx = torch.arange(i, min(i + chunk, n), device=a.device)
        dist[torch.arange(idx.numel()), idx] = math.inf  # exclude self
        rho = torch.topk(dist, k, dim=1, largest=False).values[:, -1]
        log_rho[i : i + chunk] = torch.log(rho)
    log_vd = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)
    from scipy.special import digamma  # noqa: PLC0415 (scipy is a dependency; keep import local)

    return float(digamma(n) - digamma(k) + log_vd + d * log_rho.mean())


def kl_estimate(x: torch.Tensor, log_prob: LogProb, *, k: int = 5) -> float:
    r"""Estimate $\mathrm{KL}(q\Vert p) = \mathbb E_q[\log q] - \mathbb E_q[\log p]$ from samples of $q$.

    $= -\hat H(q) + \text{NLL}$ with $\hat H$ the k-NN entropy (`knn_entropy`) and NLL the exact
    `mean_nll` under $p$. Unlike the NLL alone it penalises a sampler that collapses onto the
    modes (its entropy drops). Bias: the k-NN estimator is biased at finite $n$ and in higher
    dimension, so the estimate for $q = p$ is not exactly 0 — `sample_size_floor` measures it,
    and it can be slightly negative. Reliable in the 2-d toys; treat it as qualitative past
    $d \approx 10$.
    """
    return mean_nll(x, log_prob) - knn_entropy(x, k=k)


# --------------------------------------------------------------------------------------------
# sample-size floors
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Floor:
    """A metric's value between independent samples of the target: ``mean`` ± ``std`` over ``repeats``."""

    mean: float
    std: float
    n: int
    repeats: int


def sample_size_floor(
    metric: Callable[..., float],
    sample: Sampler,
    n: int,
    *,
    two_sample: bool = True,
    repeats: int = 3,
    seed: int = 0,
) -> Floor:
    r"""The value ``metric`` takes when the sampler is perfect, at sample size ``n``.

    ``sample(n, seed)`` draws ``n`` samples of the target (deterministic in ``seed``).
    With ``two_sample=True`` (`sliced_w2`, `energy_distance`) the floor is
    ``metric(sample(n, s), sample(n, s'))`` for independent seeds; with ``two_sample=False``
    (``lambda x: mean_nll(x, log_p)``, ``lambda x: kl_estimate(x, log_p)``) it is
    ``metric(sample(n, s))``. Mean and standard deviation over ``repeats`` seeds derived from
    ``seed`` (the seeds ``seed·1000 + 1 + i`` avoid the seeds a study uses for its own draws).
    A metric value within a few ``std`` of ``mean`` cannot be told from a perfect sampler.
    """
    check_positive(n, "n", integer=True)
    check_positive(repeats, "repeats", integer=True)
    if not callable(metric) or not callable(sample):
        raise InvalidInputError("metric and sample must be callables")
    values = []
    for i in range(repeats):
        s = int(seed) * 1000 + 1 + 2 * i
        if two_sample:
            values.append(float(metric(sample(n, s), sample(n, s + 1))))
        else:
            values.append(float(metric(sample(n, s))))
    arr = np.asarray(values)
    std = float(arr.std(ddof=1)) if repeats > 1 else float("nan")
    return Floor(mean=float(arr.mean()), std=std, n=n, repeats=repeats)


# --------------------------------------------------------------------------------------------
# convergence orders
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderFit:
    r"""Least-squares fit $\log\text{err} = \text{intercept} + \text{slope}\cdot\log\text{NFE}$ (natural logs).

    ``order = -slope``; ``stderr`` is the standard error of the slope (NaN with 2 points);
    ``used`` marks, per input point (input order), whether it entered the fit.
    """

    slope: float
    stderr: float
    intercept: float
    used: tuple[bool, ...]

    @property
    def order(self) -> float:
        return -self.slope

    @property
    def n_used(self) -> int:
        return sum(self.used)

    def predict(self, nfe: float | np.ndarray) -> float | np.ndarray:
        """Fitted error at ``nfe``."""
        return np.exp(self.intercept) * np.asarray(nfe, dtype=float) ** self.slope


def local_orders(nfe: Sequence[float], err: Sequence[float]) -> np.ndarray:
    r"""Observed orders between neighbours (sorted by NFE): $-\Delta\log\text{err} / \Delta\log\text{NFE}$."""
    n, e = np.asarray(nfe, dtype=float), np.asarray(err, dtype=float)
    order = np.argsort(n, kind="stable")
    n, e = n[order], e[order]
    return -np.diff(np.log(e)) / np.diff(np.log(n))


def fit_order(
    nfe: Sequence[float],
    err: Sequence[float],
    *,
    floor: float = 0.0,
    floor_factor: float = 10.0,
    stall_order: float = 0.3,
    rel_tol: float = 0.2,
    max_points: int = 5,
    min_points: int = 2,
) -> OrderFit:
    r"""Fit the convergence order $p$ in $\text{err} \approx C\,\text{NFE}^{-p}$ on the asymptotic range.

    Steps (the traps of DiffEqDevTools' convergence tests: steps too large, the float floor):

    1. drop points with non-finite or non-positive error or NFE, and repeated NFE values;
    2. drop points at or below ``floor_factor · floor`` (``floor`` is the error floor when known:
       the reference's own error, or a multiple of machine epsilon times the solution scale);
    3. from the fine end, drop points where the error has *stalled* (local order to the next
       coarser point below ``stall_order``) or *bends into a floor* (local order more than
       ``rel_tol`` below the previous one);
    4. the asymptotic range: starting from the finest pair, add coarser points while their local
       order stays within ``rel_tol`` (relative) of the median of the range, at most
       ``max_points`` points (at least 3 when available, even if the local orders disagree);
    5. ordinary least squares of $\log\text{err}$ on $\log\text{NFE}$ over that range.

    The slope's standard error is $\sqrt{\tfrac{\sum r_i^2/(k-2)}{\sum(\ell_i - \bar\ell)^2}}$ on the $k$
    points used (NaN when $k = 2$). Raises `InvalidInputError` when fewer than ``min_points``
    points survive.
    """
    n_arr, e_arr = np.asarray(nfe, dtype=float), np.asarray(err, dtype=float)
    if n_arr.shape != e_arr.shape or n_arr.ndim != 1:
        raise InvalidInputError(f"nfe and err must be 1-d of equal length, got {n_arr.shape} and {e_arr.shape}")
    check_positive(max_points, "max_points", integer=True)
    check_positive(min_points, "min_points", integer=True)
    if min_points < 2 or max_points < min_points:
        raise InvalidInputError(f"need 2 <= min_points <= max_points, got {min_points}, {max_points}")
    ok = np.isfinite(n_arr) & np.isfinite(e_arr) & (n_arr > 0) & (e_arr > 0)
    ok &= e_arr > floor_factor * max(float(floor), 0.0)
    idx = np.flatnonzero(ok)
    idx = idx[np.argsort(n_arr[idx], kind="stable")]
    # equal NFE (e.g. two tolerances giving the same work) cannot define a slope: keep the first
    _, first = np.unique(n_arr[idx], return_index=True)
    idx = idx[np.sort(first)]

    def local(i: int, j: int) -> float:
        return -(math.log(e_arr[j]) - math.log(e_arr[i])) / (math.log(n_arr[j]) - math.log(n_arr[i]))

    # 3. stalled tail, then a tail bending into the floor
    while idx.size >= 2 and local(idx[-2], idx[-1]) < stall_order:
        idx = idx[:-1]
    while idx.size >= 3 and local(idx[-2], idx[-1]) < (1.0 - rel_tol) * local(idx[-3], idx[-2]):
        idx = idx[:-1]
    # 4. the asymptotic range, grown from the fine end
    if idx.size >= 2:
        start = idx.size - 2
        orders = [local(idx[start], idx[start + 1])]
        while start > 0 and idx.size - start < max_points:
            candidate = local(idx[start - 1], idx[start])
            med = float(np.median(orders))
            if abs(candidate - med) > rel_tol * abs(med) and idx.size - start >= 3:
                break
            orders.append(candidate)
            start -= 1
        idx = idx[start:]
    if idx.size < min_points:
        raise InvalidInputError(
            f"only {idx.size} usable point(s) above the error floor for fitting an order (need {min_points}); "
            "use more step counts or a tighter reference"
        )
    lx, ly = np.log(n_arr[idx]), np.log(e_arr[idx])
    xm = lx.mean()
    sxx = float(((lx - xm) ** 2).sum())
    slope = float(((lx - xm) * (ly - ly.mean())).sum() / sxx)
    intercept = float(ly.mean() - slope * xm)
    if idx.size > 2:
        resid = ly - (intercept + slope * lx)
        stderr = math.sqrt(float((resid**2).sum()) / (idx.size - 2) / sxx)
    else:
        stderr = float("nan")
    used = np.zeros(n_arr.shape, dtype=bool)
    used[idx] = True
    return OrderFit(slope=slope, stderr=stderr, intercept=intercept, used=tuple(bool(u) for u in used))
