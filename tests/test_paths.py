"""Gaussian paths: analytic derivatives, log-SNR inverse, endpoint values (float64)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from odeflow import CosinePath, InvalidInputError, LinearPath, VEPath, VPPath, get_path, path_names

PATHS = [LinearPath(), VPPath(), CosinePath(), VEPath(), VPPath(beta_min=0.5, beta_max=8.0), VEPath(0.002, 80.0)]
ids = [repr(p) for p in PATHS]


@pytest.mark.parametrize("path", PATHS, ids=ids)
@given(t=st.floats(0.02, 0.98))
def test_derivatives_match_central_differences(path, t):
    h = 1e-6
    for value, deriv in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma)):
        fd = (value(t + h) - value(t - h)) / (2 * h)
        exact = deriv(t)
        assert abs(fd - exact) <= 1e-6 * max(1.0, abs(exact)), (value.__name__, t, fd, exact)


@pytest.mark.parametrize("path", PATHS, ids=ids)
@given(t=st.floats(1e-6, 1 - 1e-6))
def test_log_snr_inverse_round_trips(path, t):
    lam = path.log_snr(t)
    assert math.isfinite(lam)
    assert path.t_from_log_snr(lam) == pytest.approx(t, abs=1e-10, rel=1e-9)


@pytest.mark.parametrize("path", PATHS, ids=ids)
def test_log_snr_strictly_decreasing_and_consistent(path):
    t = torch.linspace(1e-4, 1 - 1e-4, 2001, dtype=torch.float64)
    lam = path.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all())
    direct = torch.log(path.alpha(t)) - torch.log(path.sigma(t))
    assert torch.allclose(lam, direct, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", PATHS, ids=ids)
def test_tensor_and_float_inputs_agree(path):
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    for name in ("alpha", "sigma", "d_alpha", "d_sigma", "log_snr"):
        method = getattr(path, name)
        as_tensor = method(t)
        assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float64
        assert [method(float(s)) for s in t] == pytest.approx(as_tensor.tolist(), rel=1e-15)
    assert path.alpha(torch.tensor(0.3, dtype=torch.float32)).dtype == torch.float32


def test_endpoints():
    lin = LinearPath()
    assert (lin.alpha(0.0), lin.sigma(0.0), lin.alpha(1.0), lin.sigma(1.0)) == (1.0, 0.0, 0.0, 1.0)
    cos = CosinePath()
    assert cos.alpha(1.0) == 0.0 and cos.sigma(0.0) == 0.0 and cos.alpha(0.0) == 1.0
    vp = VPPath()
    assert vp.alpha(0.0) == 1.0 and vp.sigma(0.0) == 0.0
    assert vp.alpha(1.0) == pytest.approx(math.exp(-0.25 * 19.9 - 0.05))
    ve = VEPath()
    assert ve.sigma(0.0) == pytest.approx(0.01) and ve.sigma(1.0) == pytest.approx(50.0)
    assert lin.log_snr(1.0) == -math.inf and lin.log_snr(0.0) == math.inf
    assert lin.t_from_log_snr(-math.inf) == 1.0 and lin.t_from_log_snr(math.inf) == 0.0


@pytest.mark.parametrize("path", [VPPath(), CosinePath()], ids=["vp", "cosine"])
@given(t=st.floats(0.0, 1.0))
def test_variance_preserving(path, t):
    assert path.alpha(t) ** 2 + path.sigma(t) ** 2 == pytest.approx(1.0, abs=1e-14)


def test_registry():
    assert path_names() == ["linear", "vp", "cosine", "ve"]
    assert get_path("vp", beta_max=10.0) == VPPath(beta_min=0.1, beta_max=10.0)
    with pytest.raises(InvalidInputError, match="'linear', 'vp', 'cosine', 've'"):
        get_path("edm")
    with pytest.raises(InvalidInputError, match="bad parameters"):
        get_path("linear", beta_min=1.0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), torch.tensor([0.2, 1.2])])
def test_time_outside_unit_interval_is_rejected(bad):
    with pytest.raises(InvalidInputError, match=r"outside \[0, 1\]|not finite|non-finite"):
        VPPath().alpha(bad)


def test_bad_path_parameters():
    with pytest.raises(InvalidInputError, match="beta_max"):
        VPPath(beta_min=5.0, beta_max=1.0)
    with pytest.raises(InvalidInputError, match="sigma_min"):
        VEPath(sigma_min=-1.0)
    with pytest.raises(InvalidInputError, match="sigma_max"):
        VEPath(sigma_min=1.0, sigma_max=0.5)
