"""models.nets: time embedding, TimeMLP shapes and time conventions, seeding, use as a ProbabilityFlow."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.nets import SinusoidalTimeEmbedding, TimeMLP
from odeflow import InvalidInputError, LinearPath, ProbabilityFlow, VPPath
from odeflow.predictions import PREDICTION_KINDS, convert


def _randomise(net: TimeMLP, seed: int = 0) -> TimeMLP:
    """Give the (zero-initialised) last layer random weights so outputs depend on t and x."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def test_embedding_is_sin_cos_of_geometric_frequencies():
    emb = SinusoidalTimeEmbedding(dim=8, min_freq=1.0, max_freq=8.0).double()
    assert torch.allclose(emb.freqs, torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64))
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    e = emb(t)
    assert e.shape == (3, 8)
    expected = torch.cat([torch.sin(0.3 * emb.freqs), torch.cos(0.3 * emb.freqs)])
    assert torch.allclose(e[1], expected, atol=1e-15)
    # each (sin, cos) pair lies on the unit circle; t = 0 gives (0, 1)
    assert torch.allclose(e[:, :4] ** 2 + e[:, 4:] ** 2, torch.ones(3, 4, dtype=torch.float64))
    assert torch.equal(e[0], torch.cat([torch.zeros(4), torch.ones(4)]).double())
    # a 0-d t broadcasts to the batch
    assert torch.equal(emb(torch.tensor(0.3, dtype=torch.float64), batch=5), expected.expand(5, 8))


@pytest.mark.parametrize("shape", [2, (3,), (2, 3)])
def test_output_shape_and_dtype(shape):
    net = TimeMLP(shape, width=16, depth=2, seed=0)
    dims = (shape,) if isinstance(shape, int) else shape
    x = torch.randn(7, *dims)
    for t in (0.5, torch.tensor(0.5), torch.full((7,), 0.5), torch.tensor([0.5])):
        out = net(t, x)
        assert out.shape == x.shape and out.dtype == x.dtype


def test_last_layer_starts_at_zero():
    net = TimeMLP(2, width=16, depth=2, seed=3)
    assert torch.equal(net(torch.tensor(0.7), torch.randn(5, 2)), torch.zeros(5, 2))


@settings(max_examples=25)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
def test_per_sample_times_match_scalar_times(times):
    """A (batch,) time tensor gives each row what a 0-d time gives it alone (training vs solving)."""
    net = _randomise(TimeMLP(2, width=16, depth=2, seed=0).double())
    x = torch.randn(len(times), 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.tensor(times, dtype=torch.float64)
    batched = net(t, x)
    rows = torch.cat([net(t[i], x[i : i + 1]) for i in range(len(times))])
    assert torch.allclose(batched, rows, atol=1e-13)


def test_output_depends_on_time_and_state():
    net = _randomise(TimeMLP(2, width=16, depth=2, seed=0))
    x = torch.randn(4, 2)
    assert not torch.allclose(net(torch.tensor(0.1), x), net(torch.tensor(0.9), x))
    assert not torch.allclose(net(torch.tensor(0.5), x), net(torch.tensor(0.5), x + 1.0))


def test_seed_gives_identical_nets_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = TimeMLP(2, width=32, depth=3, seed=7)
    after = torch.rand(3)
    assert torch.equal(before, after)  # building with seed= did not consume the global RNG
    b = TimeMLP(2, width=32, depth=3, seed=7)
    c = TimeMLP(2, width=32, depth=3, seed=8)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_config_rebuilds_the_architecture():
    net = TimeMLP(3, width=24, depth=4, prediction="epsilon", time_dim=16, activation="gelu", seed=0)
    twin = TimeMLP(**net.config, seed=0)
    assert twin.config == net.config
    for pa, pb in zip(net.parameters(), twin.parameters()):
        assert torch.equal(pa, pb)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == (3 + 16) * 24 + 24 + 3 * (24 * 24 + 24) + 24 * 3 + 3


@pytest.mark.parametrize("kind", PREDICTION_KINDS)
def test_probability_flow_converts_the_net_output(kind):
    """ProbabilityFlow(net, path, kind) returns the net's output for its own kind and exact conversions otherwise."""
    path = VPPath()
    net = _randomise(TimeMLP(2, width=16, depth=2, prediction=kind, seed=0).double())
    flow = net.flow(path)
    assert isinstance(flow, ProbabilityFlow) and flow.prediction == kind
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.tensor(0.4, dtype=torch.float64)
    raw = net(t, x)
    assert torch.equal(flow.predict(t, x, kind), raw)
    for target in PREDICTION_KINDS:
        expected = convert(raw, source=kind, target=target, x=x, t=t, path=path)
        assert torch.allclose(flow.predict(t, x, target), expected, atol=1e-12)


def test_float32_net_accepts_float64_states():
    net = _randomise(TimeMLP(2, width=8, depth=1, seed=0))
    x = torch.randn(3, 2, dtype=torch.float64)
    out = ProbabilityFlow(net, LinearPath())(torch.tensor(0.5, dtype=torch.float64), x)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_bad_arguments_are_named():
    with pytest.raises(InvalidInputError, match="prediction kind.*'velocity'"):
        TimeMLP(2, prediction="noise")
    with pytest.raises(InvalidInputError, match="activation.*'silu'"):
        TimeMLP(2, activation="swish2")
    with pytest.raises(InvalidInputError, match="data_shape"):
        TimeMLP(0)
    with pytest.raises(InvalidInputError, match="width"):
        TimeMLP(2, width=0)
    with pytest.raises(InvalidInputError, match="even"):
        TimeMLP(2, time_dim=7)
    with pytest.raises(InvalidInputError, match="max_freq"):
        SinusoidalTimeEmbedding(8, min_freq=10.0, max_freq=1.0)
    net = TimeMLP(2, width=8, depth=1)
    with pytest.raises(InvalidInputError, match=r"shape \(batch, 2\)"):
        net(torch.tensor(0.5), torch.randn(4, 3))
    with pytest.raises(InvalidInputError, match=r"shape \(4,\)"):
        net(torch.rand(3), torch.randn(4, 2))
    with pytest.raises(InvalidInputError, match="seed"):
        TimeMLP(2, seed=1.5)
