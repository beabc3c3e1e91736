"""PF-ODE, forward and reverse SDEs: identities, the statistics of the forward SDE, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odeflow import CosinePath, ForwardSDE, InvalidInputError, LinearPath, ProbabilityFlow, ReverseSDE, VEPath, VPPath
from odeflow.gaussian import GaussianData

PATHS = [LinearPath(), VPPath(), CosinePath(), VEPath()]


@pytest.mark.parametrize("path", PATHS, ids=repr)
@settings(max_examples=30)
@given(t=st.floats(0.02, 0.95), seed=st.integers(0, 2**16))
def test_pf_ode_identity(path, t, seed):
    """f·x − ½g²·s = α̇·x0 + σ̇·ε for x = αx0 + σε and s = −ε/σ."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 3, generator=g, dtype=torch.float64)
    x = path.alpha(t) * x0 + path.sigma(t) * eps
    score = -eps / path.sigma(t)
    lhs = path.drift_coefficient(t) * x - 0.5 * path.diffusion_squared(t) * score
    rhs = path.d_alpha(t) * x0 + path.d_sigma(t) * eps
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10)
    sde = ForwardSDE(path)
    lhs_sde = sde.drift(t, x) - 0.5 * sde.diffusion(t, x) ** 2 * score
    assert torch.allclose(lhs_sde, rhs, rtol=1e-9, atol=1e-9)


def _gaussian_flow(path, prediction):
    """A ProbabilityFlow over a 'network' that returns the exact prediction of Gaussian data."""
    data = GaussianData(torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([0.3, 2.0], dtype=torch.float64))
    exact = data.field(path)
    return ProbabilityFlow(lambda t, x: exact.predict(t, x, prediction), path, prediction), exact


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("prediction", ["velocity", "epsilon", "x0", "score"])
def test_probability_flow_views_agree_with_exact_field(path, prediction):
    flow, exact = _gaussian_flow(path, prediction)
    x = torch.randn(7, 2, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        for view in ("velocity", "x0", "eps", "score"):
            assert torch.allclose(getattr(flow, view)(t, x), getattr(exact, view)(t, x), rtol=1e-9, atol=1e-10)
        assert torch.allclose(flow(torch.tensor(t, dtype=torch.float64), x), exact.velocity(t, x), atol=1e-10)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_pf_ode_is_forward_drift_minus_half_g2_score(path):
    flow, _ = _gaussian_flow(path, "epsilon")
    sde = ForwardSDE(path)
    x = torch.randn(6, 2, dtype=torch.float64)
    for t in (0.2, 0.6):
        expected = sde.drift(t, x) - 0.5 * sde.diffusion(t, x) ** 2 * flow.score(t, x)
        assert torch.allclose(flow(t, x), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_reverse_sde_with_zero_gamma_is_the_pf_ode(path):
    flow, _ = _gaussian_flow(path, "x0")
    x = torch.randn(6, 2, dtype=torch.float64)
    for gamma in (0.0, lambda t: torch.zeros_like(t)):
        rev = ReverseSDE(flow, gamma)
        for t in (0.1, 0.5, 0.9):
            assert torch.allclose(rev.drift(t, x), flow(t, x), atol=1e-12)
            assert float(rev.diffusion(t, x)) == 0.0


def test_reverse_sde_classic_form():
    """γ = g gives drift f·x − g²·s."""
    path = VPPath()
    flow, _ = _gaussian_flow(path, "epsilon")
    rev, fwd = ReverseSDE(flow, 1.0), ForwardSDE(path)
    x = torch.randn(6, 2, dtype=torch.float64)
    t = 0.4
    g = fwd.diffusion(t, x)
    assert torch.allclose(rev.drift(t, x), fwd.drift(t, x) - g**2 * flow.score(t, x), atol=1e-10)
    assert torch.allclose(rev.diffusion(t, x), g)


def test_reverse_sde_costs_one_model_call_per_drift():
    calls = []
    path = CosinePath()
    data = GaussianData([0.0, 0.0], 1.0)

    def model(t, x):
        calls.append(float(t))
        return data.field(path).eps(t, x)

    rev = ReverseSDE(ProbabilityFlow(model, path, "epsilon"), 0.5)
    rev.drift(0.3, torch.randn(3, 2, dtype=torch.float64))
    assert len(calls) == 1


@pytest.mark.parametrize("path", [VPPath(), LinearPath(), CosinePath()], ids=repr)
def test_euler_maruyama_forward_sde_reproduces_marginals(path):
    """EM from a point mass x0 reproduces mean α(t)·x0 and variance σ(t)² (fixed seed).

    Tolerances: 5 standard errors of the sample mean/variance plus the O(h) EM bias.
    """
    torch.manual_seed(1234)
    n, x0_value = 20_000, 1.5
    sde = ForwardSDE(path)
    x = torch.full((n, 1), x0_value, dtype=torch.float64)
    checkpoints = {0.1, 0.3, 0.6, 0.85}
    steps = 850
    h = 0.85 / steps
    for i in range(steps):
        t = i * h
        x = x + sde.drift(t, x) * h + sde.diffusion(t, x) * math.sqrt(h) * torch.randn_like(x)
        t_next = round((i + 1) * h, 10)
        if t_next in checkpoints:
            mean, var = float(x.mean()), float(x.var())
            a, s = path.alpha(t_next), path.sigma(t_next)
            se_mean = s / math.sqrt(n)
            se_var = s**2 * math.sqrt(2.0 / (n - 1))
            bias = 2 * h * 10  # generous O(h) Euler–Maruyama bias bound (|f| ≤ 10 on these ranges)
            assert abs(mean - a * x0_value) <= 5 * se_mean + bias * abs(a * x0_value), (t_next, mean, a * x0_value)
            assert abs(var - s**2) <= 5 * se_var + bias * s**2, (t_next, var, s**2)


def test_bad_inputs_of_dynamics():
    path = LinearPath()
    with pytest.raises(InvalidInputError, match="callable"):
        ProbabilityFlow(3.0, path)
    with pytest.raises(InvalidInputError, match="GaussianPath"):
        ProbabilityFlow(lambda t, x: x, "linear")
    with pytest.raises(InvalidInputError, match="unknown prediction kind 'noise'"):
        ProbabilityFlow(lambda t, x: x, path, prediction="noise")
    flow = ProbabilityFlow(lambda t, x: x[:, :1], path)
    with pytest.raises(InvalidInputError, match="shaped like x"):
        flow(0.5, torch.randn(4, 2))
    flow = ProbabilityFlow(lambda t, x: x, path, "epsilon")
    with pytest.raises(InvalidInputError, match=r"outside \[0, 1\]"):
        flow(1.5, torch.randn(4, 2))
    with pytest.raises(InvalidInputError, match="singular"):
        flow(1.0, torch.randn(4, 2))  # epsilon -> velocity needs x0 = (x - σε)/α with α = 0
    with pytest.raises(InvalidInputError, match="ProbabilityFlow"):
        ReverseSDE(lambda t, x: x, 1.0)
    with pytest.raises(InvalidInputError, match="gamma must be"):
        ReverseSDE(ProbabilityFlow(lambda t, x: x, path), -1.0)
    with pytest.raises(InvalidInputError, match="GaussianPath"):
        ForwardSDE("vp")
