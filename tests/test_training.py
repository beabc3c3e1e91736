"""models.training: loss targets (minimisers checked against exact fields), time sampling, seeding, EMA,
couplings, and learned fields against the exact field of Gaussian data."""

import pytest
import torch
from scipy import stats

from models.nets import TimeMLP
from models.training import distill, loss_terms, sample_times, train
from odeflow import InvalidInputError, LinearPath, NonFiniteError, VPPath
from odeflow.gaussian import GaussianData
from odeflow.predictions import PREDICTION_KINDS

DATA = GaussianData([1.0, -0.5], [0.25, 0.5])


def _path_point(path, n, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = DATA.sample(n, generator=g)
    x1 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    tt = torch.full((n,), t, dtype=torch.float64)
    xt = path.alpha(t) * x0 + path.sigma(t) * x1
    return x0, x1, tt, xt


@pytest.mark.parametrize("path", [LinearPath(), VPPath()], ids=["linear", "vp"])
@pytest.mark.parametrize("kind", PREDICTION_KINDS)
def test_exact_prediction_minimises_the_loss(kind, path):
    """E[loss(F* + c)] − E[loss(F*)] = |c|²·E[w] at the exact conditional expectation F* (w = 1, or σ² for score).

    A wrong target (sign, coefficient, weighting) makes the cross term non-zero and fails this."""
    t, n = 0.4, 200_000
    x0, x1, tt, xt = _path_point(path, n, t)
    exact = DATA.field(path).predict(torch.tensor(t, dtype=torch.float64), xt, kind)
    c = torch.tensor([0.1, -0.2], dtype=torch.float64)
    base = loss_terms(exact, x0, x1, tt, path, kind)
    shifted = loss_terms(exact + c, x0, x1, tt, path, kind)
    w = path.sigma(t) ** 2 if kind == "score" else 1.0
    diff = shifted - base  # = w|c|²/d + 2w c·(F* − target)/d per sample; the second term has mean 0
    expected = w * float(c.pow(2).mean())
    se = float(diff.std()) / n**0.5
    assert abs(float(diff.mean()) - expected) < 5 * se + 1e-12
    assert float(diff.mean()) > 0


def test_velocity_target_on_the_linear_path_is_x1_minus_x0():
    x0, x1 = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    assert torch.allclose(loss_terms(x1 - x0, x0, x1, t, LinearPath(), "velocity"), torch.zeros(5).double(), atol=1e-15)
    # and the score target is -eps/sigma: zero loss there for every sigma
    path = VPPath()
    sigma = path.sigma(t)[:, None]
    assert torch.allclose(loss_terms(-x1 / sigma, x0, x1, t, path, "score"), torch.zeros(5).double(), atol=1e-12)


def test_sample_times_distributions():
    g = torch.Generator().manual_seed(0)
    u = sample_times(20_000, "uniform", generator=g, t_range=(0.2, 0.6), dtype=torch.float64)
    assert float(u.min()) >= 0.2 and float(u.max()) <= 0.6
    assert stats.kstest(u.numpy(), stats.uniform(loc=0.2, scale=0.4).cdf).pvalue > 1e-3
    ln = sample_times(20_000, "logit_normal", generator=g, logit_mean=0.5, logit_std=0.8, dtype=torch.float64)
    logit = torch.log(ln) - torch.log1p(-ln)
    assert stats.kstest(logit.numpy(), stats.norm(loc=0.5, scale=0.8).cdf).pvalue > 1e-3
    grid = torch.tensor([1.0, 0.5])
    picks = sample_times(1000, grid, generator=g)
    assert set(picks.tolist()) == {1.0, 0.5}


def test_training_is_reproducible_from_the_seed():
    def run(seed):
        net = TimeMLP(2, width=32, depth=2, seed=0)
        return train(net, DATA, LinearPath(), steps=60, batch_size=64, seed=seed), net

    (a, net_a), (b, net_b), (c, _) = run(3), run(3), run(4)
    assert a.losses.shape == (60,) and a.losses.dtype == torch.float64
    assert torch.allclose(a.losses, b.losses, atol=1e-6, rtol=0)
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.allclose(a.losses, c.losses)
    assert a.seed == 3 and a.seconds > 0


def _field_rmse(net, path, kind_to_compare, times=(0.1, 0.3, 0.5, 0.7, 0.9)):
    learned, exact = net.flow(path), DATA.field(path)
    errs, scales = [], []
    with torch.no_grad():
        for i, t in enumerate(times):
            *_, xt = _path_point(path, 4000, t, seed=100 + i)
            tt = torch.tensor(t, dtype=torch.float64)
            ref = exact.predict(tt, xt, kind_to_compare)
            got = learned.predict(tt.float(), xt.float(), kind_to_compare).double()
            errs.append(float((got - ref).pow(2).sum(1).mean().sqrt()))
            scales.append(float(ref.pow(2).sum(1).mean().sqrt()))
    return sum(errs) / len(errs), sum(scales) / len(scales)


@pytest.mark.parametrize(
    "kind,path",
    [("velocity", LinearPath()), ("epsilon", VPPath()), ("score", VPPath()), ("x0", LinearPath())],
    ids=["velocity-linear", "epsilon-vp", "score-vp", "x0-linear"],
)
def test_learned_field_matches_the_exact_gaussian_field(kind, path):
    """Every loss trains a field within 10 % (RMS over x_t, mean over t) of the exact one, compared in the
    model's own kind (converting an ε-model to a velocity near α = 0 amplifies its error by σ/α)."""
    net = TimeMLP(2, width=32, depth=2, prediction=kind, seed=0)
    result = train(net, DATA, path, steps=400, batch_size=256, lr=1e-2, seed=0)
    assert result.losses[-50:].mean() < result.losses[:50].mean()
    err, scale = _field_rmse(net, path, kind)
    assert err < 0.1 * scale, (err, scale)


def test_coupling_pairs_are_kept_together():
    """Trained on the deterministic coupling x0 = A x1 + b, one Euler step maps x1 to A x1 + b.

    (Re-drawing the noise independently would instead learn the independent coupling, whose
    one-step Euler image is the data mean b.)"""
    g = torch.Generator().manual_seed(0)
    A = torch.tensor([[0.5, 0.2], [-0.1, 0.3]])
    b = torch.tensor([1.0, -2.0])
    x1 = torch.randn(4000, 2, generator=g)
    x0 = x1 @ A.T + b
    net = TimeMLP(2, width=32, depth=2, seed=0)
    train(net, (x0, x1), LinearPath(), steps=400, batch_size=256, lr=1e-2, seed=0)
    xt = torch.randn(500, 2, generator=g)
    with torch.no_grad():
        one_step = xt - net(torch.tensor(1.0), xt)  # Euler from t = 1 to 0: x - 1·v
    target = xt @ A.T + b
    spread = float((target - b).pow(2).sum(1).mean().sqrt())  # ~0.6: the error of the independent coupling
    assert float((one_step - target).pow(2).sum(1).mean().sqrt()) < 0.2 * spread
    assert float((one_step - b).pow(2).sum(1).mean().sqrt()) > 0.8 * spread


def test_one_step_distillation_reproduces_the_coupling():
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(4000, 2, generator=g)
    x0 = torch.tanh(2 * x1) + 0.5 * x1.flip(1)  # a nonlinear deterministic map
    net = TimeMLP(2, width=32, depth=2, seed=0)
    result = distill((x0, x1), net, n_steps=1, steps=500, batch_size=256, lr=1e-2, seed=0)
    assert result.t_sampling == "grid"
    with torch.no_grad():
        one_step = x1[:500] - net(torch.tensor(1.0), x1[:500])
    err = float((one_step - x0[:500]).pow(2).sum(1).mean().sqrt())
    assert err < 0.1 * float(x0.pow(2).sum(1).mean().sqrt())


def test_ema_interpolates_between_the_initial_and_the_trained_weights():
    def run(ema):
        net = TimeMLP(2, width=16, depth=1, seed=0)
        train(net, DATA, LinearPath(), steps=30, batch_size=32, seed=0, ema=ema)
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    init = torch.cat([p.detach().flatten() for p in TimeMLP(2, width=16, depth=1, seed=0).parameters()])
    plain, fast, slow, mid = run(None), run(1e-12), run(1.0 - 1e-12), run(0.9)
    assert torch.allclose(fast, plain, atol=1e-6)  # decay ~0: the average is the last iterate
    assert torch.allclose(slow, init, atol=1e-6)  # decay ~1: the average never leaves the start
    assert not torch.allclose(mid, plain, atol=1e-6) and not torch.allclose(mid, init, atol=1e-6)


def test_logit_normal_training_runs_and_progress_bar(capsys):
    net = TimeMLP(2, width=16, depth=1, seed=0)
    result = train(
        net, DATA.sample(500), LinearPath(), steps=20, batch_size=32, t_sampling="logit_normal", progress=True, seed=0
    )
    assert result.t_sampling == "logit_normal" and torch.isfinite(result.losses).all()


def test_bad_input_is_named():
    net = TimeMLP(2, width=8, depth=1)
    with pytest.raises(InvalidInputError, match="t_sampling.*'uniform'.*'logit_normal'"):
        train(net, DATA, steps=2, t_sampling="beta")
    with pytest.raises(InvalidInputError, match="prediction kind"):
        train(net, DATA, prediction="noise", steps=2)
    with pytest.raises(InvalidInputError, match="path.*'linear'"):
        train(net, DATA, "straight", steps=2)
    with pytest.raises(InvalidInputError, match="steps"):
        train(net, DATA, steps=0)
    with pytest.raises(InvalidInputError, match="ema"):
        train(net, DATA, steps=2, ema=1.0)
    with pytest.raises(InvalidInputError, match="t_range"):
        train(net, DATA, steps=2, t_range=(0.5, 0.2))
    with pytest.raises(InvalidInputError, match="coupling"):
        train(net, (torch.randn(5, 2), torch.randn(4, 2)), steps=2)
    with pytest.raises(InvalidInputError, match="NaN"):
        train(net, torch.tensor([[0.0, float("nan")]]), steps=2)
    with pytest.raises(InvalidInputError, match="data must be"):
        train(net, "8gaussians", steps=2)
    with pytest.raises(InvalidInputError, match="nn.Module"):
        train(lambda t, x: x, DATA, steps=2)
    with pytest.raises(InvalidInputError, match="seed"):
        train(net, DATA, steps=2, seed="0")
    with pytest.raises(NonFiniteError, match="diverged") as info:
        train(net, torch.full((4, 2), 1e30), steps=3, batch_size=4)
    assert info.value.step == 0 and info.value.partial.losses.shape == (3,)
