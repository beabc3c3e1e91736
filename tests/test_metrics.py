"""odeflow.metrics against closed forms, scipy and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import energy_distance as scipy_energy_distance

from odeflow import metrics as M
from odeflow.errors import InvalidInputError

D = torch.float64


def _gaussian_linear_trajectories(ts: torch.Tensor, z: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PF-ODE trajectories of data N(0, s² I) on the linear path: x_t = r(t) z, r = √((1-t)²s² + t²)."""
    r = torch.sqrt((1 - ts) ** 2 * s * s + ts**2)
    dr = (ts - (1 - ts) * s * s) / r
    return r[:, None, None] * z[None], dr[:, None, None] * z[None]


# --- trajectory geometry: closed forms ----------------------------------------------------------
def test_dirac_linear_is_exactly_straight() -> None:
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([1.5, -0.5], dtype=D)
    eps = torch.randn(64, 2, generator=g, dtype=D)
    ts = torch.linspace(1, 0, 33, dtype=D)
    xs = (1 - ts)[:, None, None] * mu + ts[:, None, None] * eps[None]
    vs = (eps - mu)[None].expand_as(xs)
    assert M.straightness(ts, xs, vs) < 1e-28
    assert M.path_length_ratio(ts, xs, vs) == pytest.approx(1.0, abs=1e-14)
    assert M.path_length_ratio(ts, xs) == pytest.approx(1.0, abs=1e-14)


def test_gaussian_linear_closed_forms() -> None:
    """N(0, ¼I) on the linear path: S/E‖x1−x0‖² = 4 − π ≈ 0.858, path-length ratio 1.211."""
    s = 0.5
    z = torch.randn(500, 3, generator=torch.Generator().manual_seed(1), dtype=D)
    t, w = M.gauss_legendre(64)
    xs, vs = _gaussian_linear_trajectories(t, z, s)
    x0, x1 = s * z, z
    s_norm = M.normalized_straightness(t, xs, vs, x0=x0, x1=x1, weights=w)
    assert s_norm == pytest.approx(4 - math.pi, abs=1e-10)
    assert round(s_norm, 3) == 0.858
    # path length: ∫|r'| = (s − r*) + (1 − r*), r* = r(t*), t* = s²/(1+s²); polygon on a grid with t*
    t_star = s * s / (1 + s * s)
    r_star = math.sqrt((1 - t_star) ** 2 * s * s + t_star**2)
    exact = ((s - r_star) + (1 - r_star)) / (1 - s)
    grid = torch.cat([torch.linspace(0, t_star, 200, dtype=D), torch.linspace(t_star, 1, 800, dtype=D)[1:]])
    xs_g, vs_g = _gaussian_linear_trajectories(grid, z, s)
    assert M.path_length_ratio(grid, xs_g) == pytest.approx(exact, rel=1e-12)
    assert M.path_length_ratio(grid, xs_g, vs_g) == pytest.approx(exact, rel=1e-5)
    assert round(exact, 3) == 1.211


@settings(max_examples=30)
@given(amp=st.floats(-0.95, 0.95), scale=st.floats(0.1, 10.0))
def test_reparameterised_segment(amp: float, scale: float) -> None:
    """A straight segment run on the clock u = t + a·sin(2πt)/2π: S = a²/2, ratio exactly 1."""
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(16, 2, generator=g, dtype=D), torch.randn(16, 2, generator=g, dtype=D)
    t, w = M.gauss_legendre(48)
    u = t + amp * torch.sin(2 * math.pi * t) / (2 * math.pi)
    du = 1 + amp * torch.cos(2 * math.pi * t)
    xs = scale * (a[None] + u[:, None, None] * (b - a)[None])
    vs = scale * du[:, None, None] * (b - a)[None]
    kw = {"x0": scale * a, "x1": scale * b, "weights": w}
    assert M.normalized_straightness(t, xs, vs, **kw) == pytest.approx(amp**2 / 2, rel=1e-10, abs=1e-14)
    grid = torch.linspace(0, 1, 50, dtype=D)
    ug = grid + amp * torch.sin(2 * math.pi * grid) / (2 * math.pi)
    xs_g = scale * (a[None] + ug[:, None, None] * (b - a)[None])
    assert M.path_length_ratio(grid, xs_g) == pytest.approx(1.0, abs=1e-12)


def test_straightness_scale_and_direction() -> None:
    """Normalised S is scale-free; a trajectory given 1 → 0 (solver order) gives the same values."""
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(3), dtype=D)
    ts = torch.linspace(0, 1, 401, dtype=D)
    xs, vs = _gaussian_linear_trajectories(ts, z, 0.3)
    a = M.normalized_straightness(ts, xs, vs)
    assert M.normalized_straightness(ts, 7 * xs, 7 * vs) == pytest.approx(a, rel=1e-12)
    assert M.normalized_straightness(ts.flip(0), xs.flip(0), vs.flip(0)) == pytest.approx(a, rel=1e-12)
    assert M.straightness(ts, 2 * xs, 2 * vs) == pytest.approx(4 * M.straightness(ts, xs, vs), rel=1e-12)


def test_trapezoid_and_gauss_legendre() -> None:
    w = M.trapezoid_weights(torch.linspace(1, 0, 11, dtype=D))
    assert float(w.sum()) == pytest.approx(1.0)
    t, w = M.gauss_legendre(5, 0.0, 2.0)
    assert float((w * t**9).sum()) == pytest.approx(2**10 / 10, rel=1e-13)  # exact to degree 2n−1


# --- endpoint errors ----------------------------------------------------------------------------
def test_endpoint_errors() -> None:
    x = torch.zeros(4, 3, dtype=torch.float32)
    ref = torch.full((4, 3), 2.0, dtype=D)
    assert M.endpoint_rmse(x, ref) == 2.0
    ref[0, 0] = 5.0
    assert M.endpoint_max_error(x, ref) == 5.0
    with pytest.raises(InvalidInputError, match="shape"):
        M.endpoint_rmse(x, ref[:2])


# --- distribution metrics -----------------------------------------------------------------------
def test_sliced_w2_one_dimensional_is_exact_w2() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(300, 1, generator=g, dtype=D), 2 + 0.5 * torch.randn(300, 1, generator=g, dtype=D)
    exact = float(((x.sort(0).values - y.sort(0).values) ** 2).mean().sqrt())
    assert M.sliced_w2(x, y, n_projections=3) == pytest.approx(exact, rel=1e-12)


def test_sliced_w2_shift_and_unequal_sizes() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(400, 4, generator=g, dtype=D)
    c = torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=D)
    # a shift c: W2 along θ is |θ·c|, E(θ·c)² = |c|²/d
    assert M.sliced_w2(x, x + c, n_projections=4000) == pytest.approx(3.0 / 2.0, rel=0.03)
    # the same empirical measure with duplicated atoms: exactly 0 (merged quantile steps)
    assert M.sliced_w2(x, x.repeat(2, 1)) == pytest.approx(0.0, abs=1e-12)
    assert M.sliced_w2(x, x[:200]) > 0
    assert M.sliced_w2(x, x + c, seed=1) == M.sliced_w2(x, x + c, seed=1)


def test_energy_distance_matches_scipy() -> None:
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(200, 1, generator=g, dtype=D), 0.5 + torch.randn(150, 1, generator=g, dtype=D)
    ref = scipy_energy_distance(x[:, 0].numpy(), y[:, 0].numpy()) ** 2  # scipy: V-statistic, square-rooted
    assert M.energy_distance(x, y, unbiased=False) == pytest.approx(ref, rel=1e-10)
    # U − V = within-sample terms rescaled: U is smaller by E‖X−X'‖/n + E‖Y−Y'‖/m
    assert M.energy_distance(x, y) < M.energy_distance(x, y, unbiased=False)


def test_energy_distance_u_statistic_can_be_negative() -> None:
    values = [
        M.energy_distance(
            torch.randn(50, 2, generator=torch.Generator().manual_seed(2 * s), dtype=D),
            torch.randn(50, 2, generator=torch.Generator().manual_seed(2 * s + 1), dtype=D),
        )
        for s in range(10)
    ]
    assert min(values) < 0 < max(values)
    assert abs(float(np.mean(values))) < 0.02  # unbiased around 0 for equal laws


def _std_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x**2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)


def _normal_sampler(scale: float, d: int = 2):
    def sample(n: int, seed: int) -> torch.Tensor:
        return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D)

    return sample


def test_nll_entropy_and_kl() -> None:
    h_true = math.log(2 * math.pi * math.e)  # entropy of N(0, I_2)
    x = _normal_sampler(1.0)(4000, 0)
    assert M.mean_nll(x, _std_normal_log_prob) == pytest.approx(h_true, abs=0.05)
    assert M.knn_entropy(x) == pytest.approx(h_true, abs=0.05)
    assert abs(M.kl_estimate(x, _std_normal_log_prob)) < 0.05
    # a collapsed sampler N(0, ¼I): NLL drops below the floor H(p), KL exposes it
    xc = _normal_sampler(0.5)(4000, 1)
    assert M.mean_nll(xc, _std_normal_log_prob) < h_true - 0.5
    kl_true = 0.5 * 2 * (0.25 - 1 - math.log(0.25))
    assert M.kl_estimate(xc, _std_normal_log_prob) == pytest.approx(kl_true, abs=0.1)  # k-NN noise ~0.03


def test_sample_size_floor() -> None:
    sample = _normal_sampler(1.0)
    f = M.sample_size_floor(M.sliced_w2, sample, 500, repeats=3)
    assert f.n == 500 and f.repeats == 3 and 0 < f.mean < 0.2 and f.std > 0
    assert M.sliced_w2(sample(500, 0), 1.5 * sample(500, 99)) > f.mean + 5 * f.std
    f_nll = M.sample_size_floor(lambda x: M.mean_nll(x, _std_normal_log_prob), sample, 2000, two_sample=False)
    assert f_nll.mean == pytest.approx(math.log(2 * math.pi * math.e), abs=0.05)


# --- fit_order ----------------------------------------------------------------------------------
@settings(max_examples=50)
@given(p=st.floats(0.5, 6.0), log_c=st.floats(-3, 3))
def test_fit_order_recovers_power_law(p: float, log_c: float) -> None:
    nfe = np.array([4, 8, 16, 32, 64, 128], dtype=float)
    err = math.exp(log_c) * nfe**-p
    fit = M.fit_order(nfe, err)
    assert fit.order == pytest.approx(p, abs=1e-9)
    assert fit.stderr < 1e-9
    assert fit.predict(10.0) == pytest.approx(math.exp(log_c) * 10.0**-p, rel=1e-8)


def test_fit_order_drops_floor_and_pre_asymptotic_points() -> None:
    nfe = np.array([2, 4, 8, 16, 32, 64, 128, 256, 512], dtype=float)
    err = 3.0 / (nfe**4 + 2000.0)  # pre-asymptotic (flat) at small NFE, NFE^-4 beyond
    err = np.maximum(err, 2e-9) * (1 + 0.01 * np.sin(np.arange(nfe.size)))  # a floor with jitter
    naive = np.polyfit(np.log(nfe), np.log(err), 1)[0]
    fit = M.fit_order(nfe, err)  # floor unknown: the stalled tail is detected
    assert not any(M.fit_order(nfe, err, floor=2e-9).used[-3:])  # within 10× the floor: dropped
    assert abs(naive + 4) > 0.5  # a naive fit through everything is badly off ...
    assert fit.order == pytest.approx(4.0, abs=0.3)  # ... the asymptotic fit is not
    assert not fit.used[-1] and not fit.used[0]
    assert fit.stderr > 0


def test_fit_order_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="usable"):
        M.fit_order([4, 8, 16], [1e-3, 1e-16, 1e-16], floor=1e-15)
    with pytest.raises(InvalidInputError, match="1-d"):
        M.fit_order([1, 2], [1.0])


def test_bad_inputs_raise() -> None:
    x = torch.randn(10, 2, dtype=D)
    with pytest.raises(InvalidInputError, match="NaN"):
        M.sliced_w2(x, torch.full((10, 2), float("nan"), dtype=D))
    with pytest.raises(InvalidInputError, match="coordinates"):
        M.energy_distance(x, torch.randn(10, 3, dtype=D))
    with pytest.raises(InvalidInputError, match="time slices"):
        M.straightness(torch.linspace(0, 1, 3, dtype=D), torch.zeros(4, 2, 2), torch.zeros(4, 2, 2))
    with pytest.raises(InvalidInputError, match="one value per sample"):
        M.mean_nll(x, lambda y: y)
    with pytest.raises(InvalidInputError, match="x0= and x1="):
        t, w = M.gauss_legendre(4)
        M.straightness(t, torch.zeros(4, 2, 2), torch.zeros(4, 2, 2), weights=w)
    with pytest.raises(InvalidInputError, match="undefined"):
        M.path_length_ratio(torch.linspace(0, 1, 3, dtype=D), torch.ones(3, 2, 2))
