"""Time grids: exact formulas, monotonicity, end points, both directions, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odeflow.errors import InvalidInputError
from odeflow.paths import CosinePath, LinearPath, VEPath, VPPath
from solvers.grids import (
    GRIDS,
    flux,
    flux_mu,
    get_grid,
    grid_names,
    karras,
    log_snr_uniform,
    quadratic,
    shifted,
    uniform,
)
from solvers.solve import check_grid

PATHS = [LinearPath(), VPPath(), CosinePath(), VEPath()]
KW = {
    "uniform": {},
    "quadratic": {},
    "shifted": {"shift": 3.0},
    "flux": {"image_seq_len": 4096},
    "karras": {"path": LinearPath()},
    "log_snr_uniform": {"path": LinearPath()},
}


def test_registry_names():
    assert grid_names() == list(GRIDS) == ["uniform", "quadratic", "shifted", "flux", "karras", "log_snr_uniform"]
    with pytest.raises(InvalidInputError, match="'uniform'"):
        get_grid("linear", 4)
    with pytest.raises(InvalidInputError, match="shift"):
        get_grid("shifted", 4)  # missing argument


@pytest.mark.parametrize("name", list(KW))
@settings(max_examples=15)
@given(
    n=st.integers(1, 60),
    ends=st.tuples(st.floats(0, 1), st.floats(0, 1)).filter(lambda e: abs(e[0] - e[1]) > 1e-3),
)
def test_every_grid_is_valid_in_both_directions(name, n, ends):
    t_start, t_end = ends
    g = get_grid(name, n, t_start=t_start, t_end=t_end, **KW[name])
    assert g.dtype == torch.float64 and g.shape == (n + 1,)
    check_grid(g)  # strictly monotone, inside [0, 1]
    if name in ("shifted", "flux"):  # the map is applied to the end points too
        assert (g[0] > g[-1]) == (t_start > t_end)
    else:
        assert float(g[0]) == t_start and float(g[-1]) == t_end
    # the increasing grid is the same point set as the decreasing one
    back = get_grid(name, n, t_start=t_end, t_end=t_start, **KW[name])
    assert torch.allclose(back, g.flip(0), atol=1e-15, rtol=0)


def test_uniform_and_quadratic_formulas():
    assert torch.allclose(uniform(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    assert torch.allclose(uniform(2, 0.2, 0.8), torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64))
    assert torch.allclose(quadratic(4), torch.tensor([1.0, 0.5625, 0.25, 0.0625, 0.0], dtype=torch.float64))


@settings(max_examples=30)
@given(s=st.floats(0.1, 10.0), n=st.integers(1, 40))
def test_shifted_matches_sd3_formula(s, n):
    t = uniform(n)
    want = s * t / (1 + (s - 1) * t)
    assert torch.allclose(shifted(n, s), want, atol=1e-15, rtol=0)
    assert torch.allclose(shifted(n, 1.0), uniform(n), atol=1e-15, rtol=0)


def test_flux_mu_and_grid_match_flux_formulas():
    assert math.isclose(flux_mu(256), 0.5) and math.isclose(flux_mu(4096), 1.15)
    assert math.isclose(flux_mu(1024), 0.5 + 0.65 * 768 / 3840)  # 512x512: ~0.63
    n, seq = 28, 4096
    mu = flux_mu(seq)
    t = uniform(n)
    want = torch.where(t > 0, math.exp(mu) / (math.exp(mu) + 1 / t.clamp_min(1e-300) - 1), torch.zeros_like(t))
    g = flux(n, seq)
    assert torch.allclose(g, want, atol=1e-14, rtol=0)
    assert float(g[0]) == 1.0 and float(g[-1]) == 0.0


@pytest.mark.slow
def test_flux_grid_agrees_with_diffusers_scheduler_interior():
    """diffusers' FlowMatchEulerDiscreteScheduler shifts linspace(1, 1/n, n) by the same map."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    n, seq = 8, 4096
    sched = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    sigmas = torch.linspace(1.0, 1.0 / n, n).numpy()
    sched.set_timesteps(sigmas=sigmas, mu=flux_mu(seq))
    theirs = sched.sigmas.double()
    # our flux() shifts the same map; evaluate it on diffusers' unshifted points
    s = math.exp(flux_mu(seq))
    ours = s * torch.tensor(sigmas, dtype=torch.float64) / (1 + (s - 1) * torch.tensor(sigmas, dtype=torch.float64))
    assert torch.allclose(ours.float().double(), theirs[:-1], atol=1e-6)
    assert float(theirs[-1]) == 0.0


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("rho", [1.0, 3.0, 7.0])
def test_karras_is_the_edm_formula_in_sigma_over_alpha(path, rho):
    n = 10
    g = karras(n, path, rho=rho)
    check_grid(g)
    r = torch.exp(-path.log_snr(g))  # noise-to-signal ratio at each point
    r_hi = math.exp(-float(path.log_snr(1.0)))
    clipped = r_hi > 80.0
    free = r[1:] if clipped else r
    m = free.numel()
    r_max = 80.0 if clipped else r_hi
    r_min = float(r[-1])
    i = torch.arange(m, dtype=torch.float64)
    want = (r_max ** (1 / rho) + i / (m - 1) * (r_min ** (1 / rho) - r_max ** (1 / rho))) ** rho
    assert torch.allclose(free, want, rtol=1e-9, atol=1e-12)


def test_karras_linear_path_edm_example():
    g = karras(4, LinearPath())
    assert float(g[0]) == 1.0 and float(g[-1]) == 0.0
    assert math.isclose(float(g[1]), 80.0 / 81.0, rel_tol=1e-12)  # r = t/(1-t) = 80


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_log_snr_uniform_is_uniform_in_lambda_between_clips(path):
    n = 12
    g = log_snr_uniform(n, path)
    check_grid(g)
    lam = path.log_snr(g)
    lo, hi = -math.log(80.0), -math.log(0.002)
    clip_start = float(path.log_snr(1.0)) < lo
    clip_end = float(path.log_snr(0.0)) > hi
    free = lam[int(clip_start) : lam.numel() - int(clip_end)]
    d = free[1:] - free[:-1]
    assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-8, atol=1e-10)
    if clip_start:
        assert math.isclose(float(free[0]), lo, rel_tol=1e-10)
    if clip_end:
        assert math.isclose(float(free[-1]), hi, rel_tol=1e-10)


def test_log_snr_uniform_without_clipping_inside_the_range():
    path = LinearPath()
    g = log_snr_uniform(5, path, t_start=0.9, t_end=0.1)
    lam = path.log_snr(g)
    assert torch.allclose(lam, torch.linspace(math.log(1 / 9), math.log(9), 6, dtype=torch.float64), atol=1e-12)


def test_small_n_with_clipping():
    for path in PATHS:
        for n in (1, 2, 3):
            check_grid(log_snr_uniform(n, path))
            check_grid(karras(n, path))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: uniform(0), "n"),
        (lambda: uniform(2.5), "integer"),
        (lambda: uniform(4, 1.0, 1.0), "distinct"),
        (lambda: uniform(4, 1.5, 0.0), "outside"),
        (lambda: uniform(4, 1.0, -0.1), "outside"),
        (lambda: uniform(4, float("nan"), 0.0), "outside"),
        (lambda: shifted(4, 0.0), "shift"),
        (lambda: shifted(4, -1.0), "shift"),
        (lambda: flux(4, 0), "image_seq_len"),
        (lambda: karras(4, "linear"), "GaussianPath"),
        (lambda: karras(4, LinearPath(), rho=0.0), "rho"),
        (lambda: log_snr_uniform(4, LinearPath(), lambda_min=2.0, lambda_max=1.0), "lambda_min"),
        (
            lambda: log_snr_uniform(4, LinearPath(), t_start=0.999, t_end=0.99, lambda_max=-10.0, lambda_min=-20.0),
            "empty",
        ),
    ],
)
def test_bad_grid_arguments(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


@pytest.mark.parametrize(
    "grid, match",
    [
        ([1.0], "at least 2"),
        ([], "at least 2"),
        ([1.0, 0.5, 0.5, 0.0], "strictly monotone"),
        ([1.0, 0.2, 0.5, 0.0], "strictly monotone"),
        ([1.2, 0.5, 0.0], r"leaves \[0, 1\]"),
        ([1.0, 0.5, -0.1], r"leaves \[0, 1\]"),
        ([[1.0, 0.0]], "1-d"),
        ([1.0, float("nan")], "non-finite"),
    ],
)
def test_solve_rejects_bad_grids(grid, match):
    from solvers import solve

    with pytest.raises(InvalidInputError, match=match):
        solve(lambda t, x: -x, torch.ones(2, 2), solver="euler", grid=grid)
