"""diffusers side by side: DPM-Solver++ / UniPC against diffusers' schedulers, and `OdeflowScheduler` in Flux loops.

Oracles: ``DPMSolverMultistepScheduler`` and ``UniPCMultistepScheduler`` (flow sigmas,
``prediction_type="flow_prediction"``) run in a hand loop; ``FlowMatchEulerDiscreteScheduler``
in a FluxPipeline-style loop and in ``FluxPipeline`` itself with a tiny random
``FluxTransformer2DModel``; our own `solve` on the same field and sigmas.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
    UniPCMultistepScheduler,
)

from models.gmm import GaussianMixture  # noqa: E402
from odeflow import LinearPath, ProbabilityFlow  # noqa: E402
from odeflow.errors import InvalidInputError  # noqa: E402
from solvers import DPMSolverPP, UniPC, get_solver, solve  # noqa: E402
from solvers.diffusers import OdeflowScheduler  # noqa: E402

GMM = GaussianMixture([0.3, 0.5, 0.2], [[1.0, 0.5], [-1.0, -0.3], [0.2, -1.2]], [0.25, 0.15, 0.3])
FLUX_CONFIG = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "shift": 3.0}


# --- our multistep solvers against diffusers' on the scheduler's own sigmas ---------------------------------
def _diffusers_loop(scheduler, n: int, x: torch.Tensor, flow) -> tuple[torch.Tensor, list[float]]:
    """Hand loop; the model is evaluated at the scheduler's sigmas (its integer timesteps are truncated)."""
    scheduler.set_timesteps(n)
    sig = scheduler.sigmas
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(flow(float(sig[i]), x), t, x).prev_sample
    return x, sig.double().tolist()


def _ours(solver, grid: list[float], x: torch.Tensor, flow) -> torch.Tensor:
    state = solver.init(flow, grid[0], x, grid=grid)
    for i in range(len(grid) - 1):
        x, state = solver.step(flow, grid[i], grid[i + 1], x, state)
    assert state.nfe == len(grid) - 1
    return x


CASES = [
    (DPMSolverMultistepScheduler, {}, lambda: DPMSolverPP(2)),
    (UniPCMultistepScheduler, {}, lambda: UniPC(2)),
    (DPMSolverMultistepScheduler, {"solver_order": 3}, lambda: DPMSolverPP(3, diffusers_3m=True)),
    (UniPCMultistepScheduler, {"solver_order": 3}, lambda: UniPC(3)),
    (UniPCMultistepScheduler, {"solver_order": 1}, lambda: UniPC(1)),
]


@pytest.mark.parametrize(("cls", "options", "ours"), CASES)
@pytest.mark.parametrize("n", [5, 12, 20])
def test_multistep_solvers_equal_diffusers(cls, options: dict, ours, n: int) -> None:
    flow = GMM.field(LinearPath())
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(n))
    scheduler = cls(use_flow_sigmas=True, prediction_type="flow_prediction", **options)
    want, grid = _diffusers_loop(scheduler, n, x.clone(), flow)
    got = _ours(ours(), grid, x.double(), flow)
    assert float((got - want.double()).abs().max()) < 1e-5


def test_our_3m_is_not_diffusers_3m() -> None:
    """Our default 3M weights D2 for third order (docs/solvers.md); diffusers' update is second order."""
    flow = GMM.field(LinearPath())
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    scheduler = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", solver_order=3)
    want, grid = _diffusers_loop(scheduler, 12, x.clone(), flow)
    got = _ours(DPMSolverPP(3), grid, x.double(), flow)
    assert float((got - want.double()).abs().max()) > 1e-4


# --- OdeflowScheduler in Flux-style loops -----------------------------------------------------------------
B, L = 2, 8


@pytest.fixture(scope="module")
def flux() -> dict:
    """A tiny random FluxTransformer2DModel (diffusers' test config), conditioning, latents and ids."""
    torch.manual_seed(0)
    tr = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    ).eval()
    gen = torch.Generator().manual_seed(1)
    h = w = 4  # latent cells: 2 x 2 = 4 tokens of 4 channels
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    cond = {
        "encoder_hidden_states": torch.randn(B, L, 32, generator=gen),
        "pooled_projections": torch.randn(B, 32, generator=gen),
        "img_ids": ids.reshape(-1, 3),
        "txt_ids": torch.zeros(L, 3),
    }
    latents = torch.randn(B, (h // 2) * (w // 2), 4, generator=gen)

    @torch.no_grad()
    def velocity(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return tr(hidden_states=x, timestep=sigma, return_dict=False, **cond)[0]

    def model(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # odeflow convention: t = sigma
        return velocity(torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]), x)

    return {
        "transformer": tr,
        "velocity": velocity,
        "field": ProbabilityFlow(model, LinearPath(), "velocity"),
        "latents": latents,
        "cond": cond,
    }


def _flux_loop(scheduler, flux: dict, n: int, mu: float | None = 0.8, pass_sigmas: bool = True):
    """FluxPipeline's denoising loop (pipeline_flux.py): sigmas = linspace(1, 1/n, n), mu, t / 1000."""
    if pass_sigmas:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    else:
        scheduler.set_timesteps(n, mu=mu)
    scheduler.set_begin_index(0)
    x = flux["latents"].clone()
    calls = []
    for t in scheduler.timesteps:
        timestep = t.expand(x.shape[0]).to(x.dtype)
        calls.append(float(t))
        v = flux["velocity"](timestep / 1000, x)
        x = scheduler.step(v, t, x, return_dict=False)[0]
    return x, calls


@pytest.mark.parametrize(
    ("config", "pass_sigmas", "mu"),
    [(FLUX_CONFIG, True, 0.8), (FLUX_CONFIG, True, 1.15), ({"shift": 3.0}, False, None), ({}, False, None)],
)
@pytest.mark.parametrize("n", [4, 9])
def test_euler_reproduces_flow_match_euler(flux: dict, config: dict, pass_sigmas: bool, mu, n: int) -> None:
    base = FlowMatchEulerDiscreteScheduler(**config)
    ours = OdeflowScheduler.from_config(base.config, solver="euler")
    want, want_calls = _flux_loop(base, flux, n, mu, pass_sigmas)
    got, got_calls = _flux_loop(ours, flux, n, mu, pass_sigmas)
    assert torch.equal(ours.sigmas, base.sigmas)
    assert torch.equal(ours.timesteps, base.timesteps)
    assert got_calls == want_calls
    assert float((got - want).abs().max()) < 1e-5


@pytest.mark.parametrize(
    ("name", "options", "stages"),
    [
        ("heun", None, 2),
        ("rk4", None, 4),
        ("midpoint", None, 2),
        ("dpm_solver_pp", None, 1),
        ("dpm_solver_pp", {"order": 3, "warmup": "singlestep", "lower_order_final": False}, None),
        ("unipc", {"order": 3, "lower_order_final": False}, 1),
        ("dpm_solver", {"order": 2}, None),
        ("ab3", None, None),
    ],
)
def test_any_solver_equals_solve_on_the_same_field_and_sigmas(flux: dict, name: str, options, stages) -> None:
    base = FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG)
    ours = OdeflowScheduler.from_config(base.config, solver=name, solver_options=options)
    n = 5
    got, calls = _flux_loop(ours, flux, n)
    sol = solve(
        flux["field"], flux["latents"].clone(), solver=get_solver(name, **(options or {})), grid=ours.sigmas.double()
    )
    assert len(calls) == sol.stats.nfe == len(ours.timesteps)
    if stages is not None:
        assert ours.order == stages and len(calls) == stages * n
    assert float((got - sol.x).abs().max()) < 1e-5


def test_timesteps_are_one_float_per_model_call_at_the_stage_times(flux: dict) -> None:
    ours = OdeflowScheduler.from_config(FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG).config, solver="rk4")
    ours.set_timesteps(sigmas=np.linspace(1.0, 1 / 3, 3), mu=0.8)
    s = ours.sigmas.double()
    stage = []
    for i in range(3):
        mid = float(s[i] + 0.5 * (s[i + 1] - s[i]))
        stage += [float(s[i]), mid, mid, float(s[i + 1])]
    assert ours.timesteps.dtype == torch.float32
    assert torch.allclose(ours.timesteps.double(), 1000 * torch.tensor(stage, dtype=torch.float64), rtol=1e-7, atol=0)
    assert (ours.timesteps != ours.timesteps.round()).any()  # not truncated to integers


@pytest.mark.slow
def test_inside_flux_pipeline(flux: dict) -> None:
    """FluxPipeline itself (no text encoders or VAE: embeddings in, latents out)."""
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline

    def run(scheduler) -> torch.Tensor:
        pipe = FluxPipeline(
            scheduler=scheduler,
            vae=None,
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            transformer=flux["transformer"],
        )
        pipe.set_progress_bar_config(disable=True)
        out = pipe(
            prompt_embeds=flux["cond"]["encoder_hidden_states"],
            pooled_prompt_embeds=flux["cond"]["pooled_projections"],
            latents=flux["latents"].clone(),
            height=32,
            width=32,
            num_inference_steps=5,
            output_type="latent",
        )
        return out.images

    base = FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG)
    want = run(base)
    got = run(OdeflowScheduler.from_config(base.config, solver="euler"))
    assert float((got - want).abs().max()) < 1e-5
    heun = OdeflowScheduler.from_config(base.config, solver="heun")
    got = run(heun)
    sol = solve(flux["field"], flux["latents"].clone(), solver="heun", grid=heun.sigmas.double())
    assert float((got - sol.x).abs().max()) < 1e-5


def test_begin_index_and_scale_noise_for_img2img(flux: dict) -> None:
    """Start at step k: noise the image to sigma_k, then the remaining steps equal solve() from sigma_k."""
    ours = OdeflowScheduler.from_config(FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG).config, solver="dpm_solver_pp")
    ours.set_timesteps(sigmas=np.linspace(1.0, 1 / 6, 6), mu=0.8)
    k = 2
    ours.set_begin_index(k)
    image = torch.randn(B, 4, 4, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(B, 4, 4, generator=torch.Generator().manual_seed(4))
    t0 = ours.timesteps[k : k + 1].repeat(B)
    x = ours.scale_noise(image, t0, noise)
    sigma_k = float(ours.sigmas[k])
    assert torch.allclose(x, sigma_k * noise + (1 - sigma_k) * image)
    start = x.clone()
    for t in ours.timesteps[k:]:
        x = ours.step(flux["velocity"](t.expand(B) / 1000, x), t, x, return_dict=False)[0]
    sol = solve(flux["field"], start, solver=DPMSolverPP(2), grid=ours.sigmas.double()[k:])
    assert float((x - sol.x).abs().max()) < 1e-5

    heun = OdeflowScheduler(solver="heun")
    heun.set_timesteps(4)
    with pytest.raises(InvalidInputError, match="stage 1"):
        heun.set_begin_index(1)
    heun.set_begin_index(2)  # the first call of step 1
    warm = OdeflowScheduler(solver="dpm_solver_pp", solver_options={"warmup": "singlestep"})
    warm.set_timesteps(5)
    with pytest.raises(InvalidInputError, match="warm-up"):
        warm.set_begin_index(3)


def test_config_round_trip(tmp_path) -> None:
    s = OdeflowScheduler.from_config(
        FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG).config, solver="unipc", solver_options={"order": 3}
    )
    s.save_config(tmp_path)
    again = OdeflowScheduler.from_pretrained(tmp_path)
    assert again.config.solver == "unipc" and again.config.solver_options == {"order": 3}
    assert isinstance(again.solver, UniPC) and again.solver.p == 3
    assert again.config.use_dynamic_shifting and again.config.max_shift == 1.15


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"solver": "nope"}, "valid solvers"),
        ({"solver": "dopri5"}, "adaptive"),
        ({"solver": "euler_maruyama"}, "SDE"),
        ({"solver": "torchdiffeq", "solver_options": {"method": "rk4"}}, "backend"),
        ({"solver": "euler", "invert_sigmas": True}, "invert_sigmas"),
        ({"solver": "dpm_solver_pp", "solver_options": {"order": 7}}, "order"),
        ({"solver": "euler", "time_shift_type": "cubic"}, "time_shift_type"),
    ],
)
def test_bad_configs_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        OdeflowScheduler(**kwargs)


def test_bad_calls_are_rejected() -> None:
    s = OdeflowScheduler(solver="euler", use_dynamic_shifting=True)
    x = torch.zeros(1, 4, 4)
    with pytest.raises(InvalidInputError, match="set_timesteps"):
        s.step(x, torch.tensor(1000.0), x)
    with pytest.raises(InvalidInputError, match="mu"):
        s.set_timesteps(4)
    s.set_timesteps(4, mu=0.5)
    with pytest.raises(InvalidInputError, match="integer"):
        s.step(x, 3, x)
    with pytest.raises(InvalidInputError, match="decreasing"):
        s.set_timesteps(sigmas=[0.5, 0.8], mu=0.5)
    with pytest.raises(InvalidInputError, match=r"\(0, 1\]"):
        s.set_timesteps(sigmas=[1.5, 0.5], mu=0.5)


@pytest.mark.slow
def test_solvers_import_without_diffusers() -> None:
    code = (
        "import sys; sys.modules['diffusers'] = None\n"
        "import solvers\n"
        "assert 'diffusers' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "try:\n    import solvers.diffusers\nexcept ImportError:\n    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
