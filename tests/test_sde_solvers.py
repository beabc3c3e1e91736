"""SDE solvers: strong orders on SDEs with known pathwise solutions, weak order on Gaussian data, reverse-SDE sampling.

Oracles: geometric Brownian motion's closed form $X_T = X_0\\exp((\\mu - \\sigma^2/2)T + \\sigma W_T)$; the
Ornstein–Uhlenbeck solution by Itô integration by parts from the same Brownian path; exact
moments of linear SDEs (propagated through the solver's affine update, no Monte Carlo); the
Gaussian-mixture data moments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.gmm import GaussianMixture
from odeflow import ForwardSDE, ReverseSDE, VPPath
from odeflow.errors import InvalidInputError
from odeflow.gaussian import GaussianData
from solvers import BrownianPath, EulerMaruyama, SDEHeun, get_solver, solve, uniform
from solvers.testing import check_solver

NS = [16, 32, 64, 128, 256]


def _slope(ns: list[int], errs: list[float]) -> float:
    return -float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


class GBM:
    """dX = mu X dt + s X dW (Itô), multiplicative noise."""

    noise_type = "diagonal"

    def __init__(self, mu: float, s: float) -> None:
        self.mu, self.s = mu, s

    def drift(self, t, x):
        return self.mu * x

    def diffusion(self, t, x):
        return self.s * x


class OU:
    """dX = a X dt + b(t) dW with b(t) = 1 + t: additive, time-dependent noise."""

    noise_type = "additive"
    a = -1.5

    @staticmethod
    def b(t: float) -> float:
        return 1.0 + t

    def drift(self, t, x):
        return self.a * x

    def diffusion(self, t, x=None):
        return self.b(float(t))


@pytest.fixture(scope="module")
def paths() -> BrownianPath:
    return BrownianPath(3, (300, 1), dtype=torch.float64)


def test_euler_maruyama_strong_order_half_on_gbm(paths: BrownianPath) -> None:
    sde = GBM(1.0, 0.8)
    x0 = torch.ones(paths.shape, dtype=torch.float64)
    exact = x0 * torch.exp((sde.mu - sde.s**2 / 2) + sde.s * paths(0.0, 1.0))
    errs = [
        float(
            (solve(sde, x0, solver=EulerMaruyama(), grid=uniform(n, 0.0, 1.0), brownian=paths).x - exact).abs().mean()
        )
        for n in NS
    ]
    assert abs(_slope(NS, errs) - EulerMaruyama.strong_order) <= 0.25, errs


@pytest.fixture(scope="module")
def ou_exact(paths: BrownianPath) -> torch.Tensor:
    """X_1 = e^a X_0 + int_0^1 phi dW, phi(s) = e^{a(1-s)} b(s), with int phi dW = phi(1) W(1) - int W phi' ds.

    The ds-integral is the trapezoid rule on 2^13 dyadic nodes of the same path (error ~ 1e-4 << EM's).
    """
    sde = OU()
    k = 2**13
    s = torch.linspace(0.0, 1.0, k + 1, dtype=torch.float64)
    w = torch.stack([paths.value(float(v)) for v in s])
    dphi = torch.exp(sde.a * (1 - s)) * (-sde.a * (1 + s) + 1.0)
    f = w * dphi[:, None, None]
    integral = 0.5 * (f[1:] + f[:-1]).sum(0) / k
    x0 = torch.ones(paths.shape, dtype=torch.float64)
    return math.exp(sde.a) * x0 + sde.b(1.0) * w[-1] - integral


@pytest.mark.parametrize("solver", [EulerMaruyama(), SDEHeun()])
def test_strong_order_one_with_additive_noise(paths: BrownianPath, ou_exact: torch.Tensor, solver) -> None:
    x0 = torch.ones(paths.shape, dtype=torch.float64)
    errs = [
        float((solve(OU(), x0, solver=solver, grid=uniform(n, 0.0, 1.0), brownian=paths).x - ou_exact).abs().mean())
        for n in NS
    ]
    assert abs(_slope(NS, errs) - type(solver).strong_order_additive) <= 0.25, errs


class _UnitKicks:
    """A 'Brownian path' for a batch of n + 2 copies: copy j gets the increment sqrt|dt| in step j only.

    For a linear SDE the solver's map is affine in (x, dW), so running it on these copies exposes
    the coefficient of every increment: exact mean and variance, no Monte Carlo.
    """

    def __init__(self, grid: list[float]) -> None:
        self.index = {(grid[i], grid[i + 1]): i for i in range(len(grid) - 1)}
        self.shape = torch.Size((len(grid) + 1, 1))

    def __call__(self, t0: float, t1: float) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=torch.float64)
        out[self.index[(t0, t1)]] = math.sqrt(abs(t1 - t0))
        return out


def _exact_moments(solver, sde, grid: torch.Tensor, mean0: float, var0: float) -> tuple[float, float]:
    g = grid.tolist()
    n = len(g) - 1
    x = torch.full((n + 2, 1), mean0, dtype=torch.float64)
    x[n + 1] += 1.0  # the last copy measures d x_N / d x_0
    out = solve(sde, x, solver=solver, grid=grid, brownian=_UnitKicks(g)).x
    base = out[n]  # no kicks, started at the mean: the mean
    gain = out[n + 1] - base
    var = float(gain**2) * var0 + float(((out[:n] - base) ** 2).sum())
    return float(base), var


@pytest.mark.parametrize("solver", [EulerMaruyama(), SDEHeun()])
def test_weak_order_of_mean_and_variance_on_gaussian_data(solver) -> None:
    """Reverse SDE (gamma = g) on VP for N(0.5, 0.2^2) data, from the exact marginal at t = 1 to t = 1e-3."""
    path = VPPath()
    data = GaussianData([0.5], [0.04])
    sde = ReverseSDE(data.field(path), gamma=1.0)
    t_end = 1e-3
    mean_exact = float(path.alpha(t_end)) * 0.5
    var_exact = float(data.marginal_cov_eigenvalues(t_end, path)[0])
    # EM's variance error is pre-asymptotic below ~64 steps (beta(1) = 20); Heun's converges faster (measured ~2)
    ns = [64, 128, 256, 512] if isinstance(solver, EulerMaruyama) else [32, 64, 128]
    e_mean, e_var = [], []
    for n in ns:
        m, v = _exact_moments(
            solver,
            sde,
            uniform(n, 1.0, t_end),
            float(path.alpha(1.0)) * 0.5,
            float(data.marginal_cov_eigenvalues(1.0, path)[0]),
        )
        e_mean.append(abs(m - mean_exact))
        e_var.append(abs(v - var_exact))
    for errs in (e_mean, e_var):
        p = _slope(ns, errs)
        assert p >= type(solver).weak_order - 0.25, (solver, errs, p)
    if isinstance(solver, EulerMaruyama):
        assert abs(_slope(ns, e_mean) - 1.0) <= 0.25 and abs(_slope(ns, e_var) - 1.0) <= 0.25, (e_mean, e_var)


def test_moment_propagation_agrees_with_monte_carlo() -> None:
    """The exact-moment trick above is checked once against sampling with real Brownian paths."""
    path = VPPath()
    data = GaussianData([0.5], [0.04])
    sde = ReverseSDE(data.field(path), gamma=1.0)
    grid = uniform(16, 1.0, 1e-3)
    m0, v0 = float(path.alpha(1.0)) * 0.5, float(data.marginal_cov_eigenvalues(1.0, path)[0])
    m, v = _exact_moments(EulerMaruyama(), sde, grid, m0, v0)
    n = 20_000
    x = m0 + math.sqrt(v0) * torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = solve(sde, x, solver=EulerMaruyama(), grid=grid, seed=9).x
    assert abs(float(out.mean()) - m) < 4 * math.sqrt(v / n)
    assert abs(float(out.var()) / v - 1) < 4 * math.sqrt(2 / n)


@pytest.mark.slow
@pytest.mark.parametrize("solver", [EulerMaruyama(), SDEHeun()])
def test_reverse_sde_with_exact_gmm_score_reproduces_data_moments(solver) -> None:
    path = VPPath()
    gmm = GaussianMixture([0.3, 0.5, 0.2], [[1.0, 0.5], [-1.0, -0.3], [0.2, -1.2]], [0.25, 0.15, 0.3])
    sde = ReverseSDE(gmm.field(path), gamma=1.0)
    n, t_end = 2000, 1e-3
    x1 = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bp = BrownianPath(4, x1.shape, dtype=x1.dtype, t_start=t_end)  # grid points are dyadic nodes of this span
    out = solve(sde, x1, solver=solver, grid=uniform(256, 1.0, t_end), brownian=bp).x
    target = gmm.marginal(t_end, path)
    mean, cov = target.mean(), target.covariance()
    sd = cov.diagonal().sqrt()
    assert ((out.mean(0) - mean).abs() < 4 * sd / math.sqrt(n) + 0.02).all(), (out.mean(0), mean)
    emp = torch.cov(out.T)
    assert ((emp - cov).abs() < 4 * math.sqrt(2 / n) * sd[:, None] * sd[None, :] + 0.04).all(), (emp, cov)


def test_forward_sde_noises_data_to_the_path_marginal() -> None:
    """ForwardSDE from a point x0 at t = 0: N(alpha x0, sigma^2) at t = 0.8 (increasing time)."""
    path = VPPath()
    n = 4000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    bp = BrownianPath(2, x0.shape, dtype=x0.dtype, t_end=0.8)
    out = solve(ForwardSDE(path), x0, solver=SDEHeun(), grid=uniform(128, 0.0, 0.8), brownian=bp).x
    a, s = float(path.alpha(0.8)), float(path.sigma(0.8))
    assert abs(float(out.mean()) - 0.7 * a) < 4 * s / math.sqrt(n) + 1e-3
    assert abs(float(out.var()) / s**2 - 1) < 4 * math.sqrt(2 / n) + 0.01


def test_nfe_and_determinism() -> None:
    sde = OU()
    x = torch.zeros(5, 1, dtype=torch.float64)
    g = uniform(12, 0.0, 1.0)
    a = solve(sde, x, solver=EulerMaruyama(), grid=g, seed=1)
    b = solve(sde, x, solver="euler_maruyama", grid=g, brownian=BrownianPath(1, x.shape, dtype=x.dtype))
    c = solve(sde, x, solver=get_solver("sde_heun"), grid=g, seed=1)
    assert torch.equal(a.x, b.x)
    assert a.stats.nfe == 12 and c.stats.nfe == 24
    assert EulerMaruyama.kind == SDEHeun.kind == "sde"


def test_bad_input_is_rejected() -> None:
    x = torch.zeros(4, 2, dtype=torch.float64)
    g = uniform(4, 0.0, 1.0)
    with pytest.raises(InvalidInputError, match="drift"):
        solve(lambda t, x: x, x, solver=EulerMaruyama(), grid=g)
    with pytest.raises(InvalidInputError, match="shape"):
        solve(OU(), x, solver=EulerMaruyama(), grid=g, brownian=BrownianPath(0, (4, 1)))
    with pytest.raises(InvalidInputError, match="Stratonovich"):
        solve(GBM(1.0, 1.0), x, solver=SDEHeun(), grid=g, seed=0)
    with pytest.raises(InvalidInputError, match="not both"):
        solve(OU(), x, solver=EulerMaruyama(), grid=g, seed=0, brownian=BrownianPath(0, (4, 2)))
    with pytest.raises(InvalidInputError, match="unknown options"):
        solve(OU(), x, solver=EulerMaruyama(), grid=g, generator=None)

    class BadDiffusion(OU):
        def diffusion(self, t, x=None):
            return torch.ones(3)

    with pytest.raises(InvalidInputError, match="broadcast"):
        solve(BadDiffusion(), x, solver=EulerMaruyama(), grid=g, seed=0)


@pytest.mark.parametrize("solver", [EulerMaruyama(), SDEHeun()], ids=repr)
def test_check_solver_contract(solver) -> None:
    """The shared suite: interface, strong/weak order on its additive problems, NFE, float32, determinism."""
    check_solver(solver)
