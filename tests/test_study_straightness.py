"""The straightness study reproduces its closed forms (tiny config through the real runner)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from odeflow.paths import get_path
from studies import straightness
from studies.problems import get_problem
from studies.runner import run_study


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("straightness")
    cfg = straightness.Config(
        problems=("dirac", "gaussian_sd0.5"), paths=("linear", "vp", "cosine", "ve"), n_samples=32, nodes=64,
        plot_trajectories=0,
        plots=False,
    )
    res = run_study(straightness, cfg, out, progress=False)
    return res.df.set_index(["problem", "path"]), out


def test_dirac_linear_is_straight_and_one_euler_step_lands(result) -> None:
    df, _ = result
    row = df.loc[("dirac", "linear")]
    assert row["S"] < 1e-20  # 0 up to round-off
    assert row["ratio"] == pytest.approx(1.0, abs=1e-12)
    assert row["one_step_rmse"] < 1e-12
    assert df.loc[("dirac", "vp"), "S_norm"] > 0.1  # the VP arc is not straight
    assert df.loc[("dirac", "ve"), "ratio"] == pytest.approx(1.0, abs=1e-9)  # a ray run at a varying speed ...
    assert df.loc[("dirac", "ve"), "S_norm"] > 1.0  # ... is geometrically straight but has S > 0


def test_gaussian_closed_forms(result) -> None:
    df, _ = result
    lin = df.loc[("gaussian_sd0.5", "linear")]
    assert lin["S_norm"] == pytest.approx(4 - math.pi, abs=1e-8)
    assert round(lin["S_norm"], 3) == 0.858 and round(lin["ratio_exact"], 3) == 1.211
    assert lin["ratio"] == pytest.approx(lin["ratio_exact"], abs=1e-3)  # Gauss–Legendre across the kink at t*
    for path in ("vp", "cosine", "ve"):
        row = df.loc[("gaussian_sd0.5", path)]
        assert row["ratio"] == pytest.approx(1.0, abs=1e-9)
        assert row["S_norm"] == pytest.approx(row["S_norm_exact"], rel=1e-8)
    # same curves (α² + σ² = 1), different clocks: equal ratios, different S
    assert df.loc[("gaussian_sd0.5", "vp"), "S_norm"] > 4 * df.loc[("gaussian_sd0.5", "cosine"), "S_norm"]


def test_report_files_and_statement(result) -> None:
    _, out = result
    table = (out / "table.md").read_text()
    assert "depends on the time parameterisation" in table and "0.8584" in table
    for name in ("results.csv", "config.json"):
        assert (out / name).stat().st_size > 0


def test_plots(result, tmp_path: Path) -> None:
    df, _ = result
    cfg = straightness.Config(problems=("gaussian_sd0.5",), paths=("linear", "cosine"), nodes=16, plot_trajectories=4)
    summary = straightness.report(df.reset_index().query("problem == 'gaussian_sd0.5'"), tmp_path, cfg)
    names = sorted(p.name for p in summary.plots)
    assert names == ["straightness.png", "trajectories_gaussian_sd0.5.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in summary.plots)


def test_rk4_trajectories_match_the_flow_map() -> None:
    """The integrator used for mixtures agrees with the closed form on a Gaussian."""
    problem, path = get_problem("gaussian_aniso"), get_path("vp")
    x1, _ = problem.start(16, path, seed=0)
    times = [1.0, 0.6, 0.3, 0.05, 0.0]
    states = straightness._rk4_through(problem.field(path), x1, times, substeps=16)
    for t, x in zip(times[1:], states[1:]):
        assert torch.allclose(x, problem.flow_map(x1, 1.0, t, path), atol=1e-6)
