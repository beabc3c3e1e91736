"""Gaussian data: exact field against the flow map, moments, endpoints, bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odeflow import CosinePath, InvalidInputError, LinearPath, VEPath, VPPath, convert
from odeflow.gaussian import GaussianData

PATHS = [LinearPath(), VPPath(), CosinePath(), VEPath()]


def _random_data(seed, d=3, kind="full"):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    if kind == "full":
        a = torch.randn(d, d, generator=g, dtype=torch.float64)
        cov = a @ a.T / d + 0.05 * torch.eye(d, dtype=torch.float64)
    elif kind == "diag":
        cov = torch.rand(d, generator=g, dtype=torch.float64) + 0.05
    else:
        cov = 0.7
    return GaussianData(mean, cov)


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("kind", ["full", "diag", "iso"])
@settings(max_examples=10)
@given(seed=st.integers(0, 1000), t=st.floats(0.1, 0.9))
def test_flow_map_derivative_is_the_field(path, kind, seed, t):
    data = _random_data(seed, kind=kind)
    x = torch.randn(4, 3, dtype=torch.float64)
    h = 1e-6
    fd = (data.flow_map(x, 0.95, t + h, path) - data.flow_map(x, 0.95, t - h, path)) / (2 * h)
    y = data.flow_map(x, 0.95, t, path)
    v = data.field(path)(t, y)
    assert torch.allclose(fd, v, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_predictions_are_mutually_consistent(path):
    data = _random_data(3)
    field = data.field(path)
    x = torch.randn(5, 3, dtype=torch.float64)
    t = 0.42
    v = field.velocity(t, x)
    for kind, view in (("x0", field.x0), ("epsilon", field.eps), ("score", field.score)):
        assert torch.allclose(convert(v, source="velocity", target=kind, x=x, t=t, path=path), view(t, x), atol=1e-10)


def test_flow_map_pushes_noise_to_data():
    data = _random_data(5)
    noise = torch.randn(200_000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x0 = data.flow_map(noise, 1.0, 0.0, LinearPath())
    assert torch.allclose(x0.mean(0), data.mean, atol=0.02)
    assert torch.allclose(torch.cov(x0.T), data.cov, atol=0.03)


def test_point_mass_endpoints():
    data = GaussianData([1.0, -2.0], 0.0)
    field = data.field(LinearPath())
    x = torch.randn(3, 2, dtype=torch.float64)
    assert torch.allclose(x - field(1.0, x), data.mean.expand(3, 2))  # one Euler step from t = 1
    assert torch.allclose(field.x0(0.5, x), data.mean.expand(3, 2))


def test_bad_input():
    with pytest.raises(InvalidInputError, match="positive semi-definite"):
        GaussianData([0.0, 0.0], [1.0, -1.0])
    with pytest.raises(InvalidInputError, match="symmetric"):
        GaussianData([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(InvalidInputError, match=r"shape \(batch, 2\)"):
        GaussianData([0.0, 0.0], 1.0).flow_map(torch.randn(3, 3), 1.0, 0.0, LinearPath())
    with pytest.raises(InvalidInputError, match="singular"):
        GaussianData([0.0, 0.0], 0.0).flow_map(torch.randn(3, 2), 0.0, 1.0, LinearPath())
