"""The SDE study: exact laws of the schemes, strong/weak orders, distribution metrics (tiny configs)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from odeflow.errors import InvalidInputError
from odeflow.paths import get_path
from studies import sde
from studies.problems import get_problem
from studies.runner import run_study


def test_exact_law_matches_monte_carlo() -> None:
    """The probe construction gives the law of Euler–Maruyama; Monte Carlo with real noise agrees."""
    steps, n = 6, 20000
    mean, cov, _, _ = sde.exact_law("euler_maruyama", "gaussian_aniso", "vp", steps, 1.0)
    problem, path = get_problem("gaussian_aniso"), get_path("vp")
    x1, _ = problem.start(n, path, seed=3)
    from solvers.grids import uniform

    x, _ = sde._sample("euler_maruyama", "gaussian_aniso", "vp", x1, uniform(steps), 1.0, 11)
    se = (torch.diagonal(cov) / n).sqrt()
    assert torch.all((x.mean(0) - mean).abs() < 5 * se)
    assert torch.allclose(torch.cov(x.T), cov, rtol=0.06, atol=0.01)


def test_weak_error_vanishes_with_the_exact_law() -> None:
    """With many steps the scheme's law approaches the data law (marginal-preserving reverse SDE)."""
    m, c, mu, sig = sde.exact_law("sde_heun", "gaussian_aniso", "vp", 256, 1.0)
    assert sde.gaussian_w2(m, c, mu, sig) < 1e-4
    assert sde.gaussian_w2(mu, sig, mu, sig) == pytest.approx(0.0, abs=1e-7)
    shifted = sde.gaussian_w2(mu + torch.tensor([3.0, 4.0], dtype=torch.float64), sig, mu, sig)
    assert shifted == pytest.approx(5.0, rel=1e-6)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    cfg = sde.Config(
        sde_solvers=("euler_maruyama", "sde_heun"),
        steps=(32, 64, 128),
        reference_steps=512,
        n_paths=32,
        dist_problems=("8gaussians",),
        samplers=("heun@linear", "euler_maruyama@vp"),
        nfe=(2, 16),
        n_samples=300,
        floor_repeats=3,
        plots=False,
    )
    out = tmp_path_factory.mktemp("sde")
    return run_study(sde, cfg, out, progress=False), out


@pytest.mark.slow
def test_orders_and_tables(result) -> None:
    res, out = result
    table = res.summary.table.set_index("solver")
    assert table.loc["euler_maruyama", "strong order"] == pytest.approx(1.0, abs=0.3)  # additive noise
    assert table.loc["sde_heun", "strong order"] == pytest.approx(1.0, abs=0.3)
    assert table.loc["euler_maruyama", "weak order"] == pytest.approx(1.0, abs=0.3)
    assert table.loc["sde_heun", "weak order"] > 1.5  # Heun is weak order 2 with additive noise
    text = (out / "table.md").read_text()
    assert "Distribution error at equal NFE" in text and "heun@linear" in text
    plots = sde.report(res.df, out, sde.Config()).plots  # the plots, drawn from the same rows
    assert sorted(p.name for p in plots) == ["sde_distribution_8gaussians.png", "sde_strong_weak.png"]
    assert all(p.stat().st_size > 0 for p in plots)


@pytest.mark.slow
def test_distribution_rows(result) -> None:
    res, _ = result
    dist = res.df[res.df["part"] == "dist"]
    assert set(dist["status"]) == {"ok"}
    em = dist[dist["solver"] == "euler_maruyama"].set_index("nfe_budget")
    assert em.loc[16, "sw2"] < em.loc[2, "sw2"] and em.loc[16, "kl"] < em.loc[2, "kl"]
    heun = dist[dist["solver"] == "heun"]
    assert list(heun["steps"]) == [1, 8]  # 2 NFE per step
    for col in ("sw2_floor", "energy_floor", "nll_floor", "kl_floor"):
        assert dist[col].nunique() == 1 and math.isfinite(dist[col].iloc[0])
    # the NLL floor is the data entropy, which a sampler at 16 NFE approaches from either side
    assert abs(heun["nll"].iloc[-1] - heun["nll_floor"].iloc[-1]) < 1.0


def test_bad_configs() -> None:
    with pytest.raises(InvalidInputError, match="steps must be positive"):
        sde.Config(steps=(4, -8))
    with pytest.raises(InvalidInputError, match="reference_steps"):
        sde.Config(steps=(512,), reference_steps=1024)
    with pytest.raises(InvalidInputError, match="valid solvers here are"):
        sde.validate(sde.Config(sde_solvers=("nosuch",)))
    with pytest.raises(InvalidInputError, match="not stochastic"):
        sde.validate(sde.Config(sde_solvers=("ddim",)))  # eta = 0: deterministic
    with pytest.raises(InvalidInputError, match="solver@path"):
        sde.validate(sde.Config(samplers=("heun",)))
    with pytest.raises(InvalidInputError, match="no density"):
        sde.validate(sde.Config(dist_problems=("dirac",)))


def test_contract_helpers(tmp_path: Path) -> None:
    assert sde.parse_sampler("ddim:eta=1@vp") == ("ddim:eta=1", "vp")
    probe = sde.ProbePath([1.0, 0.5, 0.0], torch.ones(2, 3, 2))
    assert probe.shape == (3, 2) and probe(0.5, 0.0).sum() == 6
    with pytest.raises(InvalidInputError, match="not a step"):
        probe(1.0, 0.0)
