"""BrownianPath: determinism, consistency under refinement, either time direction, Brownian statistics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odeflow.errors import InvalidInputError
from solvers import BrownianPath

times = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=40)
@given(ts=st.lists(times, min_size=2, max_size=12, unique=True), seed=st.integers(0, 2**40))
def test_increments_add_up_over_any_refinement(ts: list[float], seed: int) -> None:
    """W(b) - W(a) equals the sum of the increments over any partition of [a, b], in either direction."""
    bp = BrownianPath(seed, (3,), dtype=torch.float64)
    ts = sorted(ts)
    whole = bp(ts[0], ts[-1])
    parts = sum(bp(ts[i], ts[i + 1]) for i in range(len(ts) - 1))
    assert torch.allclose(parts, whole, rtol=0, atol=1e-12)
    assert torch.allclose(bp(ts[-1], ts[0]), -whole, rtol=0, atol=0)
    backwards = sum(bp(ts[i + 1], ts[i]) for i in reversed(range(len(ts) - 1)))
    assert torch.allclose(backwards, -whole, rtol=0, atol=1e-12)


@settings(max_examples=30)
@given(ts=st.lists(times, min_size=1, max_size=8), seed=st.integers(0, 1000), cache=st.integers(1, 8))
def test_values_do_not_depend_on_query_order_or_cache(ts: list[float], seed: int, cache: int) -> None:
    a = BrownianPath(seed, (2, 2), dtype=torch.float64)
    b = BrownianPath(seed, (2, 2), dtype=torch.float64, cache_size=cache)
    forward = [a.value(t) for t in ts]
    # warm b's tiny cache with other times, then query in reverse
    for t in (0.123, 0.77, 0.5):
        b.value(t)
    backward = [b.value(t) for t in reversed(ts)][::-1]
    for u, v in zip(forward, backward):
        assert torch.equal(u, v)


def test_seed_determines_the_path_on_every_dtype() -> None:
    a = BrownianPath(7, (5,), dtype=torch.float64)
    b = BrownianPath(7, (5,), dtype=torch.float32)
    c = BrownianPath(8, (5,), dtype=torch.float64)
    assert b(0.1, 0.35).dtype == torch.float32
    assert torch.equal(a(0.1, 0.35).float(), b(0.1, 0.35))
    assert not torch.allclose(a(0.1, 0.35), c(0.1, 0.35))
    assert torch.equal(a(0.3, 0.3), torch.zeros(5, dtype=torch.float64))
    assert torch.equal(a.value(0.0), torch.zeros(5, dtype=torch.float64))


def test_grid_points_with_rounding_error_hit_the_same_nodes() -> None:
    """linspace on a shifted span gives u = k/n only up to rounding; the path must not notice."""
    lo = 1e-3
    bp = BrownianPath(1, (4,), dtype=torch.float64, t_start=lo, t_end=1.0)
    coarse = torch.linspace(1.0, lo, 5, dtype=torch.float64).tolist()
    fine = torch.linspace(1.0, lo, 17, dtype=torch.float64).tolist()
    for i in range(4):
        assert torch.allclose(
            bp(coarse[i], coarse[i + 1]), sum(bp(fine[j], fine[j + 1]) for j in range(4 * i, 4 * i + 4))
        )
    assert len(bp._cache) <= 16  # dyadic nodes only: no descent to the leaves


def test_increment_statistics() -> None:
    """Increments are N(0, |dt|), independent over disjoint intervals; W(1/2) | W(1) is the bridge."""
    n = 40_000
    bp = BrownianPath(2024, (n,), dtype=torch.float64)
    se = 4 * math.sqrt(2 / n)
    for a, b in [(0.0, 1.0), (0.25, 0.5), (0.1, 0.1 + 1e-3), (0.9, 0.3), (1 / 3, 0.7)]:
        d = bp(a, b)
        assert abs(float(d.mean())) < 4 * math.sqrt(abs(b - a) / n)
        assert abs(float(d.var()) / abs(b - a) - 1) < se, (a, b)
    x, y = bp(0.0, 0.3), bp(0.3, 0.45)
    z = bp(1 / 3, 0.6)  # overlaps neither endpoint exactly (non-dyadic leaves)
    assert abs(float(torch.corrcoef(torch.stack([x, y]))[0, 1])) < 4 / math.sqrt(n)
    assert abs(float(torch.corrcoef(torch.stack([bp(0.0, 1 / 3), z]))[0, 1])) < 4 / math.sqrt(n)
    # bridge: Cov(W(1/2), W(1)) = 1/2, Cov(W(0.3), W(0.8)) = 0.3
    assert abs(float((bp.value(0.5) * bp.value(1.0)).mean()) - 0.5) < 4 * math.sqrt(0.5 / n) * 1.5
    assert abs(float((bp.value(0.3) * bp.value(0.8)).mean()) - 0.3) < 4 * math.sqrt(0.3 / n) * 1.5
    std = bp.normal(0.2, 0.3)
    assert abs(float(std.var()) - 1) < se


def test_span_and_scaling() -> None:
    """On [2, 6] the variance of W(6) - W(2) is 4."""
    n = 20_000
    bp = BrownianPath(5, (n,), dtype=torch.float64, t_start=2.0, t_end=6.0)
    assert abs(float(bp(2.0, 6.0).var()) / 4 - 1) < 4 * math.sqrt(2 / n)
    assert abs(float(bp(2.5, 3.0).var()) / 0.5 - 1) < 4 * math.sqrt(2 / n)
    with pytest.raises(InvalidInputError, match="outside"):
        bp(1.0, 3.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": 1.5, "shape": (2,)},
        {"seed": True, "shape": (2,)},
        {"seed": 1, "shape": (-1,)},
        {"seed": 1, "shape": "ab"},
        {"seed": 1, "shape": (2,), "dtype": torch.int64},
        {"seed": 1, "shape": (2,), "depth": 0},
        {"seed": 1, "shape": (2,), "depth": 60},
        {"seed": 1, "shape": (2,), "cache_size": 0},
        {"seed": 1, "shape": (2,), "t_start": 1.0, "t_end": 1.0},
        {"seed": 1, "shape": (2,), "t_start": 0.0, "t_end": float("inf")},
    ],
)
def test_bad_construction_is_rejected(kwargs: dict) -> None:
    with pytest.raises(InvalidInputError):
        BrownianPath(**kwargs)


def test_bad_queries_are_rejected() -> None:
    bp = BrownianPath(0, (2,))
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(InvalidInputError):
            bp(0.5, bad)
    with pytest.raises(InvalidInputError, match="t0 != t1"):
        bp.normal(0.5, 0.5)
