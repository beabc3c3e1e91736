"""The performance study's machinery: peers agree with our solvers, timing utilities, a tiny run.

No test asserts a timing: ratios are checked for being computed (finite, positive), never for
their value.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from odeflow.errors import InvalidInputError
from odeflow.paths import LinearPath
from solvers import get_solver, grids, solve
from studies import bench, peers
from studies import performance as perf

PATH = LinearPath()


def _linear_field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dx/dt = A(t) x with a time-dependent rotation-and-decay matrix (smooth, non-autonomous)."""
    a = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=x.dtype) * (1.0 + t)
    return x @ a.T


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------------------------
# peers: the same method on the same grid gives the same numbers as ours
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["euler", "heun", "midpoint", "rk4", "rk38"])
def test_hand_loop_equals_our_solver(x64, method):
    g = grids.shifted(7, 2.0)
    ours = solve(_linear_field, x64, solver=method, grid=g).x
    hand = peers.hand_loop(_linear_field, x64, g, method)
    assert torch.allclose(ours, hand, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    ("ours", "theirs"), [("euler", "euler"), ("heun", "heun2"), ("midpoint", "midpoint"), ("rk38", "rk4")]
)
def test_torchdiffeq_fixed_equals_ours(x64, ours, theirs):
    g = grids.quadratic(6)
    counted = peers.CountingField(_linear_field)
    out = peers.torchdiffeq_fixed(counted, x64, g, theirs)
    ref = solve(_linear_field, x64, solver=ours, grid=g)
    assert torch.allclose(out, ref.x, rtol=0, atol=1e-12)
    assert counted.nfe == ref.stats.nfe


@pytest.mark.parametrize(("ours", "theirs"), [("euler", "euler"), ("midpoint", "midpoint"), ("rk38", "rk4")])
def test_flow_matching_time_flip_equals_ours(x64, ours, theirs):
    """flow_matching runs t' = 1 - t with v' = -v: same trajectory as ours on the uniform grid."""
    steps = 5
    out = peers.flow_matching_fixed(_linear_field, x64, method=theirs, steps=steps)
    ref = solve(_linear_field, x64, solver=ours, grid=grids.uniform(steps)).x
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    on_grid = peers.flow_matching_fixed(_linear_field, x64, grid=grids.shifted(steps, 3.0), method=theirs)
    assert torch.allclose(on_grid, solve(_linear_field, x64, solver=ours, grid=grids.shifted(steps, 3.0)).x, atol=1e-12)


def test_diffusers_loops(x64):
    pytest.importorskip("diffusers")
    g = grids.shifted(6, 3.0)
    out = peers.diffusers_flow_euler(_linear_field, x64, grid=g)
    # the scheduler keeps its sigmas in float32: agreement to float32 round-off of the grid
    assert torch.allclose(out, solve(_linear_field, x64, solver="euler", grid=g).x, atol=1e-6)
    counted = peers.CountingField(_linear_field)
    peers.diffusers_flow_euler(counted, x64, steps=6)
    assert counted.nfe == 6
    for name in peers.DIFFUSERS_MULTISTEP:
        counted = peers.CountingField(_linear_field)
        y = peers.diffusers_multistep(counted, x64, 5, name)
        assert counted.nfe == 5 and y.shape == x64.shape and bool(torch.isfinite(y).all())
    with pytest.raises(InvalidInputError, match="end at t = 0"):
        peers.diffusers_flow_euler(_linear_field, x64, grid=[1.0, 0.5, 0.1])
    with pytest.raises(InvalidInputError, match="valid"):
        peers.diffusers_multistep(_linear_field, x64, 4, "heun")


def test_adaptive_peers_reach_the_tolerance(x64):
    ref = solve(_linear_field, x64, solver=get_solver("dop853", rtol=1e-12, atol=1e-12)).x
    y, nfe = peers.torchdiffeq_adaptive(_linear_field, x64, rtol=1e-8, atol=1e-8)
    assert float((y - ref).abs().max()) < 1e-6 and nfe > 6
    for method in ("RK45", "DOP853"):
        y, nfe = peers.scipy_adaptive(_linear_field, x64, rtol=1e-8, atol=1e-8, method=method)
        assert float((y - ref).abs().max()) < 1e-6 and nfe > 6


def test_peer_names_are_checked():
    with pytest.raises(InvalidInputError, match="valid"):
        peers.nfe_per_step("torchdiffeq", "rk45")
    with pytest.raises(InvalidInputError, match="valid"):
        peers.hand_loop(_linear_field, torch.zeros(2, 2), [1.0, 0.0], "ab2")


# ----------------------------------------------------------------------------------------------
# timing utilities
# ----------------------------------------------------------------------------------------------
def test_time_interleaved_rotates_and_counts():
    calls: list[str] = []
    cands = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    t = bench.time_interleaved(cands, repeats=3, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotated rounds
    assert all(len(v.times) == 3 and v.median >= v.min >= 0 for v in t.values())
    with pytest.raises(InvalidInputError):
        bench.time_interleaved({}, repeats=1)


def test_paired_ratio_and_loglog_interpolation():
    a = bench.Timing("a", (1.0, 2.0, 30.0))
    b = bench.Timing("b", (2.0, 4.0, 10.0))
    assert bench.paired_ratio(a, b) == 0.5  # median of (0.5, 0.5, 3)
    # work ~ err^(-1/2): exact under log-log interpolation, NaN outside the measured range
    errs = [1e-2, 1e-4, 1e-6]
    work = [e**-0.5 for e in errs]
    assert math.isclose(bench.interpolate_loglog(errs, work, 1e-3), 1e-3**-0.5, rel_tol=1e-12)
    assert math.isnan(bench.interpolate_loglog(errs, work, 1e-8))
    with bench.torch_threads(1):
        assert torch.get_num_threads() == 1


# ----------------------------------------------------------------------------------------------
# the study, tiny
# ----------------------------------------------------------------------------------------------
TINY = perf.Config(
    overhead_fields=("8gaussians", "mlp"),
    overhead_methods=("euler", "rk4"),
    overhead_batches=(64,),
    overhead_nfe=4,
    compile=False,
    mlp_width=8,
    mlp_depth=1,
    repeats=2,
    warmup=0,
    adaptive_problems=("8gaussians",),
    adaptive_batch=16,
    tolerances=(1e-3, 1e-4, 1e-5),
    adaptive_repeats=1,
    accuracy_problems=("8gaussians",),
    accuracy_nfe=(4,),
    accuracy_batch=64,
    probe_batch=32,
    ours=("euler", "midpoint", "unipc"),
    optimize=("unipc",),
    optimize_evals=2,
    reference_tol=1e-8,
    plots=False,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from studies.runner import run_study

    out = tmp_path_factory.mktemp("perf")
    return run_study(perf, TINY, out, progress=False), out


@pytest.mark.slow
def test_tiny_study_tables(tiny_run):
    result, out = tiny_run
    df = result.df
    assert set(df["part"]) == {"overhead", "adaptive", "accuracy"}
    over = perf.overhead_table(df)
    assert list(over.columns[:5]) == ["field", "method", "batch", "NFE", "ours ms"]
    assert len(over) == 4 and (over["NFE"] == 4).all()
    for col in ("ours/hand", "ours/torchdiffeq", "ours/flow_matching"):
        assert (over[col] > 0).all() and over[col].map(math.isfinite).all()
    assert over.loc[over["method"] == "euler", "ours/diffusers"].map(math.isfinite).all()
    # every implementation spent exactly the same NFE and computed (nearly) the same thing
    d = df[df["part"] == "overhead"]
    assert (d["nfe"] == 4).all()
    same = d[d["impl"].isin(["ours", "hand-written loop"])]
    assert (same["max_diff_vs_ours"] < 1e-5).all()

    ad = perf.adaptive_table(df)
    assert {"NFE ratio (median)", "NFE ratio (max)", "time ratio (median)", "time ratio (max)"} <= set(ad.columns)
    assert set(ad["peer"]) == set(perf.PEERS_ADAPTIVE)

    acc = perf.accuracy_table(df)
    assert list(acc.columns) == [
        "problem",
        "NFE",
        "best peer",
        "peer err",
        "best ours",
        "ours err",
        "ours/peer",
        "ours uniform best",
    ]
    row = acc.iloc[0]
    assert row["ours/peer"] == pytest.approx(row["ours err"] / row["peer err"])
    a = df[df["part"] == "accuracy"]
    assert "optimized" in set(a["grid"]) and (a.loc[a["side"] == "peer", "nfe_used"] == 4).all()

    assert (result.summary.table["value"] > 0).all()
    assert result.summary.table["measure"].str.startswith("(a)").any()


@pytest.mark.slow
def test_tiny_study_files(tiny_run):
    _, out = tiny_run
    res = pd.read_csv(out / "results.csv")
    tim = pd.read_csv(out / "timings.csv")
    assert not any(c.endswith("wall_s") for c in res.columns)  # timings stay out of results.csv
    assert {"median_wall_s", "ratio_wall_s"} <= set(tim.columns)
    text = (out / "table.md").read_text()
    assert "(a) Overhead" in text and "(b) Adaptive" in text and "(c) Accuracy" in text


def test_steps_for_nfe_counts_start_up_costs():
    from studies.problems import get_problem

    field = get_problem("8gaussians").field(PATH)
    x = torch.zeros(2, 2, dtype=torch.float64)
    assert perf.steps_for_nfe(field, x, get_solver("rk4"), 8) == 2
    assert perf.steps_for_nfe(field, x, get_solver("rk4"), 6) is None
    assert perf.steps_for_nfe(field, x, get_solver("ab2"), 8) == 7  # Heun start: 2 + 6


def test_config_validation():
    with pytest.raises(InvalidInputError, match="parts"):
        perf.Config(parts=("speed",))
    with pytest.raises(InvalidInputError, match="multiple of 4"):
        perf.Config(overhead_nfe=6)
    with pytest.raises(InvalidInputError, match="unknown problem"):
        perf.Config(accuracy_problems=("nope",))
    with pytest.raises(InvalidInputError, match="optimize"):
        perf.Config(ours=("euler",), optimize=("unipc",))
    with pytest.raises(InvalidInputError, match="unknown solver"):
        perf.validate(perf.Config(ours=("euler", "warp"), optimize=()))
    with pytest.raises(InvalidInputError, match="adaptive"):
        perf.validate(perf.Config(ours=("dopri5",), optimize=()))
    assert perf.Config.quick().parts == perf.PARTS


# ----------------------------------------------------------------------------------------------
# compile_field (the backend is dynamo's "eager" one here: tracing without code generation, fast)
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compile_field_is_a_drop_in_field(x64):
    from solvers.compiled import CompiledField, compile_field
    from studies.problems import get_problem

    field = get_problem("8gaussians").field(PATH)
    fast = compile_field(field, backend="eager")
    assert isinstance(fast, CompiledField) and fast.path is field.path  # attributes delegate
    g = grids.uniform(5)
    a = solve(field, x64, solver="rk4", grid=g)
    b = solve(fast, x64, solver="rk4", grid=g)
    assert torch.allclose(a.x, b.x, rtol=0, atol=1e-12) and a.stats.nfe == b.stats.nfe
    with pytest.raises(InvalidInputError):
        compile_field(None)


def test_compile_field_falls_back_to_eager_with_a_warning(x64):
    from solvers.compiled import compile_field

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    fast = compile_field(_linear_field, backend=broken_backend)
    with pytest.warns(RuntimeWarning, match="eager"):
        y = fast(torch.tensor(0.5, dtype=torch.float64), x64)
    assert fast.fallback and torch.equal(y, _linear_field(torch.tensor(0.5, dtype=torch.float64), x64))
