"""The convergence study: fitted orders match theory on smooth problems (tiny configs, real runner)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from odeflow.errors import InvalidInputError
from studies import convergence as C
from studies.runner import run_study

STEPS = (8, 12, 16, 24, 32, 48, 64, 96, 128)


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory: pytest.TempPathFactory):
    cfg = C.Config(
        problems=("gaussian_aniso",),
        paths=("linear",),
        grids=("uniform",),
        solvers=("euler", "heun", "rk4", "dopri5"),
        steps=STEPS,
        tolerances=(1e-4, 1e-6, 1e-8),
        n_samples=8,
        plots=False,
    )
    out = tmp_path_factory.mktemp("convergence")
    return run_study(C, cfg, out, progress=False), out


@pytest.mark.slow
def test_orders_match_theory_on_the_gaussian(gaussian_run) -> None:
    """Euler 1, Heun 2, RK4 4, Dopri5 5 within ±0.3 (analytic reference: the closed-form flow map)."""
    res, _ = gaussian_run
    table = res.summary.table
    fixed = table[table["mode"] == "fixed"].set_index("solver")
    for solver, order in (("euler", 1), ("heun", 2), ("rk4", 4), ("dopri5", 5)):
        assert fixed.loc[solver, "theory"] == order
        assert fixed.loc[solver, "order"] == pytest.approx(order, abs=0.3), solver
        assert fixed.loc[solver, "points"] >= 3
    nfe = res.df[res.df["solver"] == "rk4"]["nfe"].tolist()
    assert nfe == [4 * s for s in STEPS]  # NFE counted by the solver: 4 per RK4 step


@pytest.mark.slow
def test_adaptive_rows(gaussian_run) -> None:
    res, out = gaussian_run
    ada = res.df[res.df["mode"] == "adaptive"]
    assert list(ada["tol"]) == [1e-4, 1e-6, 1e-8] and ada["steps"].isna().all()
    assert np.all(np.diff(ada["nfe"].to_numpy()) > 0)  # tighter tolerance, more work
    assert np.all(ada["err"].to_numpy() < 100 * ada["tol"].to_numpy())
    assert (out / "timings.csv").exists() and "wall_s" not in (out / "results.csv").read_text().splitlines()[0]


@pytest.mark.slow
def test_nonlinear_mixture_against_the_scipy_reference(tmp_path) -> None:
    """On a smooth nonlinear mixture (reference: scipy DOP853) RK4 and Heun keep their orders."""
    cfg = C.Config(
        problems=("smooth3",), paths=("vp",), grids=("uniform",), solvers=("heun", "rk4"),
        steps=(32, 48, 64, 96, 128), n_samples=4, plots=False, reference_tol=1e-11,
    )
    res = run_study(C, cfg, tmp_path, progress=False)
    table = res.summary.table.set_index("solver")
    assert table.loc["heun", "order"] == pytest.approx(2.0, abs=0.3)
    assert table.loc["rk4", "order"] == pytest.approx(4.0, abs=0.3)
    assert 0 < res.df["ref_err"].iloc[0] < 1e-8


def test_nfe_at_interpolates_on_log_log() -> None:
    nfe, err = np.array([4.0, 8.0, 16.0]), np.array([1e-1, 1e-2, 1e-3])
    assert C.nfe_at(nfe, err, 1e-2) == pytest.approx(8.0)
    assert C.nfe_at(nfe, err, math.sqrt(1e-1 * 1e-2)) == pytest.approx(math.sqrt(32.0))
    assert math.isnan(C.nfe_at(nfe, err, 1e-4))


def test_solver_specs_and_validation() -> None:
    assert C.parse_spec("dpm_solver_pp:order=3;multistep=false") == ("dpm_solver_pp", {"order": 3, "multistep": False})
    assert C.make_solver("dpm_solver:order=3").order == 3
    specs = C.expand_solvers(C.Config())
    assert {"euler", "heun", "rk4", "dopri5", "ddim", "scipy:method=DOP853"} <= set(specs)
    assert "euler_maruyama" not in specs  # SDE solvers belong to the sde study
    assert C.is_adaptive(C.make_solver("scipy:method=RK45")) and not C.is_adaptive(C.make_solver("rk4"))
    assert not C.is_adaptive(C.make_solver("torchdiffeq:method=rk4"))
    with pytest.raises(InvalidInputError, match="valid ODE solvers are: .*rk4"):
        C.validate(C.Config(solvers=("rk5",)))
    with pytest.raises(InvalidInputError, match="steps must be positive"):
        C.Config(steps=(4, -8))
    with pytest.raises(InvalidInputError, match="valid grids are"):
        C.validate(C.Config(grids=("nope",)))
    with pytest.raises(InvalidInputError, match="valid problems are"):
        C.validate(C.Config(problems=("nope",)))
