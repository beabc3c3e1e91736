"""`solvers.grids.optimized`: grids tuned to a field and a solver beat uniform grids at equal NFE."""

from __future__ import annotations

import math

import pytest
import torch

from odeflow.errors import InvalidInputError
from odeflow.paths import LinearPath
from solvers import get_solver, grids, solve
from solvers.grid_optimization import clear_cache, equidistributed, optimize_grid

PATH = LinearPath()


def _eight_gaussians():
    from models import toys

    return toys.get("8gaussians").field(PATH)


def _start(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


@pytest.fixture(scope="module")
def problem():
    """8 Gaussians (sd 0.1) on the linear path; evaluation points independent of the probe, exact reference."""
    field = _eight_gaussians()
    x_eval = _start(1024, seed=11)
    ref = solve(field, x_eval, solver=get_solver("dop853", rtol=1e-10, atol=1e-10)).x
    probe = _start(256, seed=12)
    return field, x_eval, ref, probe


def _check_grid(g: torch.Tensor, n: int, t_start: float, t_end: float) -> None:
    assert g.dtype == torch.float64 and g.dim() == 1 and g.numel() == n + 1
    assert float(g[0]) == t_start and float(g[-1]) == t_end
    d = g[1:] - g[:-1]
    assert bool((d < 0).all()) if t_start > t_end else bool((d > 0).all())
    assert float(g.min()) >= 0.0 and float(g.max()) <= 1.0


@pytest.mark.parametrize(("solver", "n"), [("euler", 6), ("midpoint", 3), ("unipc", 6)])
def test_optimized_beats_uniform_at_equal_nfe(problem, solver, n):
    """On held-out samples the tuned grid has a clearly smaller endpoint error than the uniform one."""
    field, x_eval, ref, probe = problem
    g, info = grids.optimized(field, n, probe, solver, return_info=True)
    _check_grid(g, n, 1.0, 0.0)
    sol_opt = solve(field, x_eval, solver=solver, grid=g)
    sol_uni = solve(field, x_eval, solver=solver, grid=grids.uniform(n))
    assert sol_opt.stats.nfe == sol_uni.stats.nfe  # equal work
    err_opt, err_uni = _rmse(sol_opt.x, ref), _rmse(sol_uni.x, ref)
    assert err_opt < 0.8 * err_uni, (err_opt, err_uni)
    # the search never returns something worse (on the probe) than where it started
    assert info.loss <= info.loss_start <= info.loss_uniform
    assert info.total_nfe == info.pilot_nfe + info.local_nfe + info.search_nfe


def test_cache_and_info(problem):
    field, _, _, probe = problem
    clear_cache()
    g1, i1 = grids.optimized(field, 3, probe, "heun", return_info=True, max_evals=10)
    assert not i1.cached and i1.pilot_nfe > 0 and i1.evaluations <= 10 + 7  # + the starting grids
    g2, i2 = grids.optimized(field, 3, probe, "heun", return_info=True, max_evals=10)
    assert i2.cached and torch.equal(g1, g2)
    # the pilot is shared across solvers and step counts: a new solver pays no pilot again
    _, i3 = grids.optimized(field, 3, probe, "midpoint", return_info=True, max_evals=10)
    assert not i3.cached and i3.pilot_nfe == 0
    g4 = grids.optimized(field, 3, probe, "heun", max_evals=10, cache=False)
    assert torch.allclose(g4, g1)  # deterministic


def test_other_ends_and_directions(problem):
    field, _, _, probe = problem
    g = grids.optimized(field, 4, probe, "midpoint", t_start=0.9, t_end=0.05, max_evals=8)
    _check_grid(g, 4, 0.9, 0.05)
    # increasing time (encoding data to noise) gives an increasing grid
    x0 = solve(field, probe, solver="rk4", grid=grids.uniform(64)).x
    g_up = grids.optimized(field, 3, x0, "heun", t_start=0.0, t_end=1.0, max_evals=8)
    _check_grid(g_up, 3, 0.0, 1.0)


def test_one_step_and_given_reference(problem):
    field, _, _, probe = problem
    g = grids.optimized(field, 1, probe, "rk4")
    assert g.tolist() == [1.0, 0.0]
    ref = solve(field, probe, solver=get_solver("dopri5", rtol=1e-9, atol=1e-9)).x
    g, info = grids.optimized(field, 3, probe, "midpoint", reference=ref, return_info=True, max_evals=8)
    _check_grid(g, 3, 1.0, 0.0)
    assert info.pilot_nfe == 0 and "equidistributed" not in info.starts


def test_bad_input(problem):
    field, _, _, probe = problem
    with pytest.raises(InvalidInputError, match="positive integer"):
        grids.optimized(field, 0, probe, "euler")
    with pytest.raises(InvalidInputError, match="fixed-step"):
        grids.optimized(field, 4, probe, "dopri5")
    with pytest.raises(InvalidInputError, match="loss"):
        grids.optimized(field, 4, probe, "euler", loss="max")
    with pytest.raises(InvalidInputError, match="shape"):
        grids.optimized(field, 4, probe, "euler", reference=probe[:3])
    with pytest.raises(InvalidInputError, match="solver"):
        grids.optimized(field, 4, probe, "no_such_solver")
    with pytest.raises(InvalidInputError, match="callable"):
        grids.optimized(None, 4, probe, "euler")
    with pytest.raises(InvalidInputError):
        grids.optimized(field, 4, probe, "euler", t_start=0.5, t_end=0.5)
    with pytest.raises(InvalidInputError, match="NaN"):
        grids.optimized(field, 4, torch.full((4, 2), math.nan, dtype=torch.float64), "euler")


def test_equidistributed_places_steps_by_density():
    times = torch.linspace(1.0, 0.0, 11, dtype=torch.float64)
    flat = equidistributed(times, torch.ones(10), 5)
    assert torch.allclose(flat, torch.linspace(1.0, 0.0, 6, dtype=torch.float64))
    # all density in the last cell [0.1, 0]: the interior points crowd into it
    dens = torch.full((10,), 1e-9, dtype=torch.float64)
    dens[-1] = 1.0
    g = equidistributed(times, dens, 4)
    assert g[0] == 1.0 and g[-1] == 0.0
    assert bool((g[1:-1] < 0.1 + 1e-6).all()) and bool((g[1:] < g[:-1]).all())
    # a zero density falls back to uniform spacing
    assert torch.allclose(equidistributed(times, torch.zeros(10), 5), flat)


def test_optimize_grid_matches_wrapper(problem):
    field, _, _, probe = problem
    g1, info = optimize_grid(field, 2, probe, "heun", max_evals=5, cache=False)
    g2 = grids.optimized(field, 2, probe, "heun", max_evals=5, cache=False)
    assert torch.equal(g1, g2) and info.n == 2
