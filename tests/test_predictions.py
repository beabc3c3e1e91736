"""Prediction conversions: exact round trips, agreement with the defining formulas, singularities."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odeflow import PREDICTION_KINDS, CosinePath, InvalidInputError, LinearPath, VEPath, VPPath, convert

PATHS = [LinearPath(), VPPath(), CosinePath(), VEPath()]


def _pair(seed, shape=(6, 3)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


def _kind_value(kind, x0, eps, t, path):
    s, da, ds = path.sigma(t), path.d_alpha(t), path.d_sigma(t)
    return {"velocity": da * x0 + ds * eps, "epsilon": eps, "x0": x0, "score": -eps / s}[kind]


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("source,target", list(itertools.permutations(PREDICTION_KINDS, 2)))
@settings(max_examples=20)
@given(t=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_convert_matches_definitions_and_round_trips(path, source, target, t, seed):
    x0, eps = _pair(seed)
    x = path.alpha(t) * x0 + path.sigma(t) * eps
    src = _kind_value(source, x0, eps, t, path)
    out = convert(src, source=source, target=target, x=x, t=t, path=path)
    expected = _kind_value(target, x0, eps, t, path)
    scale = 1.0 + expected.abs().max()
    assert (out - expected).abs().max() <= 1e-10 * scale
    back = convert(out, source=target, target=source, x=x, t=t, path=path)
    assert (back - src).abs().max() <= 1e-10 * (1.0 + src.abs().max())


def test_velocity_formulas_of_the_design():
    path, t = VPPath(), 0.37
    x0, eps = _pair(1)
    x = path.alpha(t) * x0 + path.sigma(t) * eps
    v = path.d_alpha(t) * x0 + path.d_sigma(t) * eps
    a, s, da, ds = path.alpha(t), path.sigma(t), path.d_alpha(t), path.d_sigma(t)
    den = da * s - ds * a
    assert torch.allclose(convert(v, source="velocity", target="x0", x=x, t=t, path=path), (s * v - ds * x) / den)
    assert torch.allclose(convert(v, source="velocity", target="epsilon", x=x, t=t, path=path), (da * x - a * v) / den)


def test_linear_path_velocity_is_eps_minus_x0():
    path = LinearPath()
    x0, eps = _pair(2)
    t = 0.3
    x = (1 - t) * x0 + t * eps
    v = convert(x0, source="x0", target="velocity", x=x, t=t, path=path)
    assert torch.allclose(v, eps - x0, atol=1e-14)


def test_float32_keeps_dtype():
    path = CosinePath()
    x = torch.randn(4, 2)
    out = convert(torch.randn(4, 2), source="epsilon", target="x0", x=x, t=0.5, path=path)
    assert out.dtype == torch.float32


def test_singular_conversion_raises():
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(InvalidInputError, match="singular at t = 1"):
        convert(x, source="epsilon", target="x0", x=x, t=1.0, path=LinearPath())
    with pytest.raises(InvalidInputError, match="singular at t = 0"):
        convert(x, source="x0", target="score", x=x, t=0.0, path=LinearPath())


def test_bad_inputs():
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(InvalidInputError, match="unknown prediction kind 'v'.*'velocity', 'epsilon', 'x0', 'score'"):
        convert(x, source="v", target="x0", x=x, t=0.5, path=LinearPath())
    with pytest.raises(InvalidInputError, match=r"outside \[0, 1\]"):
        convert(x, source="x0", target="epsilon", x=x, t=1.2, path=LinearPath())
    with pytest.raises(InvalidInputError, match="shape"):
        convert(x[:2], source="x0", target="epsilon", x=x, t=0.5, path=LinearPath())
    with pytest.raises(InvalidInputError, match="dtype"):
        convert(x.float(), source="x0", target="epsilon", x=x, t=0.5, path=LinearPath())
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        convert(x * float("nan"), source="x0", target="epsilon", x=x, t=0.5, path=LinearPath())
    with pytest.raises(InvalidInputError, match="GaussianPath"):
        convert(x, source="x0", target="epsilon", x=x, t=0.5, path="linear")
    with pytest.raises(InvalidInputError, match="floating dtype"):
        convert(x.long(), source="x0", target="epsilon", x=x.long(), t=0.5, path=LinearPath())
