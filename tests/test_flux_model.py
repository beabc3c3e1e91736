"""FluxModel on CPU with tiny random models of the real architecture, checked against diffusers.

Oracles: diffusers' ``FluxPipeline`` (its Euler loop, its prompt encoding, its latent packing and
position ids, its VAE decoding) run side by side on the same tiny transformer, VAE and text
encoders; save/load round trips compared bit for bit.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from models.flux import (  # noqa: E402
    FluxCondition,
    FluxModel,
    check_weights_folder,
    latent_image_ids,
    pack_latents,
    unpack_latents,
)
from odeflow import InvalidInputError, LinearPath, ProbabilityFlow  # noqa: E402

pytestmark = pytest.mark.flux

PROMPTS = ["a red fox in the snow", "an old castle on a misty lake"]
H = W = 32  # pixels; the tiny VAE down-samples 2x -> 16x16 latent -> 64 tokens


@pytest.fixture(scope="module")
def dev() -> FluxModel:
    return FluxModel.tiny(seed=0, guidance_embeds=True)


@pytest.fixture(scope="module")
def schnell() -> FluxModel:
    return FluxModel.tiny(seed=1, guidance_embeds=False)


def _pipeline(model: FluxModel, *, text: bool = False):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    s = model.schedule
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=s["use_dynamic_shifting"],
        base_shift=s["base_shift"],
        max_shift=s["max_shift"],
        shift=s["shift"],
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=model.vae,
        text_encoder=model.text_encoder if text else None,
        tokenizer=model.tokenizer if text else None,
        text_encoder_2=model.text_encoder_2 if text else None,
        tokenizer_2=model.tokenizer_2 if text else None,
        transformer=model.transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- packing and ids -------------------------------------------------------------------------------
@settings(max_examples=25)
@given(
    b=st.integers(1, 3),
    c=st.integers(1, 5),
    h=st.integers(1, 4).map(lambda k: 2 * k),
    w=st.integers(1, 4).map(lambda k: 2 * k),
)
def test_pack_unpack_round_trip_and_match_diffusers(b: int, c: int, h: int, w: int) -> None:
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline

    z = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(b * 100 + c * 10 + h + w))
    tokens = pack_latents(z)
    assert tokens.shape == (b, (h // 2) * (w // 2), 4 * c)
    assert torch.equal(unpack_latents(tokens, h, w), z)
    assert torch.equal(tokens, FluxPipeline._pack_latents(z, b, c, h, w))
    # diffusers' unpack takes pixel sizes and a VAE factor; factor 1 means pixels = latent cells
    assert torch.equal(FluxPipeline._unpack_latents(tokens, h, w, 1), z)
    ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32)
    assert torch.equal(latent_image_ids(h, w), ids)


def test_packing_rejects_bad_shapes() -> None:
    with pytest.raises(InvalidInputError, match="even"):
        pack_latents(torch.zeros(1, 16, 3, 4))
    with pytest.raises(InvalidInputError, match="tokens"):
        unpack_latents(torch.zeros(1, 5, 64), 4, 4)


def test_flux_mu_matches_diffusers_calculate_shift() -> None:
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    flux_mu = pytest.importorskip("solvers.grids").flux_mu

    for n in (16, 256, 1024, 4096, 6000):
        assert flux_mu(n) == pytest.approx(calculate_shift(n), abs=1e-12)
    assert flux_mu(4096) == pytest.approx(1.15) and flux_mu(1024) == pytest.approx(0.63)


# --- the field equals diffusers' Euler loop -------------------------------------------------------
@pytest.mark.parametrize("variant", ["dev", "schnell"])
@pytest.mark.parametrize("n", [1, 4, 7])
def test_euler_on_default_grid_equals_flux_pipeline(variant: str, n: int, dev: FluxModel, schnell: FluxModel) -> None:
    grids = pytest.importorskip("solvers.grids")
    from solvers import solve

    model = dev if variant == "dev" else schnell
    cond = model.encode(PROMPTS, cache_dir=False)
    field = model.field(cond, H, W, guidance=3.5)
    assert isinstance(field, ProbabilityFlow) and isinstance(field.path, LinearPath)
    x1 = model.noise(2, H, W, torch.Generator().manual_seed(n))
    grid = field.default_grid(n)
    if variant == "dev":  # the checkpoint's schedule is exactly grids.flux at this token count
        assert torch.equal(grid, grids.flux(n, model.image_seq_len(H, W)))
    else:
        assert torch.equal(grid, grids.uniform(n))
    sol = solve(field, x1, solver="euler", grid=grid)
    assert sol.stats.nfe == n and sol.x.dtype == torch.float32
    ref = _pipeline(model)(
        prompt_embeds=cond.prompt_embeds,
        pooled_prompt_embeds=cond.pooled,
        latents=x1,
        height=H,
        width=W,
        num_inference_steps=n,
        guidance_scale=3.5,
        output_type="latent",
    ).images
    assert (sol.x - ref).abs().max() <= 1e-5 * max(1.0, float(ref.abs().max()))
    # and the decoded images equal the pipeline's own decoding of the same latents
    ref_img = _pipeline(model)(
        prompt_embeds=cond.prompt_embeds,
        pooled_prompt_embeds=cond.pooled,
        latents=x1,
        height=H,
        width=W,
        num_inference_steps=n,
        guidance_scale=3.5,
        output_type="pt",
    ).images
    img = model.decode(sol.x, H, W)
    assert img.shape == (2, 3, H, W) and (img - ref_img).abs().max() <= 1e-5


@pytest.mark.parametrize("variant", ["dev", "schnell"])
@pytest.mark.parametrize("solver", ["heun", "rk4"])
def test_odeflow_scheduler_inside_flux_pipeline_equals_solve(
    variant: str, solver: str, dev: FluxModel, schnell: FluxModel
) -> None:
    """The same multi-stage solver run by FluxPipeline (through OdeflowScheduler) and by solve()."""
    pytest.importorskip("solvers.grids")
    from solvers import solve
    from solvers.diffusers import OdeflowScheduler

    model = dev if variant == "dev" else schnell
    n = 3
    cond = model.encode(PROMPTS, cache_dir=False)
    field = model.field(cond, H, W, guidance=3.5)
    x1 = model.noise(2, H, W, torch.Generator().manual_seed(11))
    ours = solve(field, x1, solver=solver, grid=field.default_grid(n))
    pipe = _pipeline(model)
    pipe.scheduler = OdeflowScheduler.from_config(pipe.scheduler.config, solver=solver)
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda mod, args: calls.append(1))
    try:
        ref = pipe(
            prompt_embeds=cond.prompt_embeds,
            pooled_prompt_embeds=cond.pooled,
            latents=x1,
            height=H,
            width=W,
            num_inference_steps=n,
            guidance_scale=3.5,
            output_type="latent",
        ).images
    finally:
        handle.remove()
    assert len(calls) == ours.stats.nfe  # one transformer call per stage, as solve() counts them
    assert (ours.x - ref).abs().max() <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_guidance_changes_dev_and_is_ignored_by_schnell(dev: FluxModel, schnell: FluxModel) -> None:
    cond = dev.encode(PROMPTS[:1], cache_dir=False)
    x = dev.noise(1, H, W, torch.Generator().manual_seed(0))
    t = torch.tensor(0.7)
    v35 = dev.field(cond, H, W, guidance=3.5)(t, x)
    v1 = dev.field(cond, H, W, guidance=1.0)(t, x)
    assert not torch.allclose(v35, v1)
    with pytest.raises(InvalidInputError, match="guidance"):
        dev.field(cond, H, W, guidance=None)
    cond_s = schnell.encode(PROMPTS[:1], cache_dir=False)
    with_g, without_g = schnell.field(cond_s, H, W, guidance=3.5), schnell.field(cond_s, H, W, guidance=None)
    assert torch.equal(with_g(t, x), without_g(t, x))
    assert schnell.field(cond_s, H, W).guidance is None


def test_field_is_the_velocity_of_the_linear_path(dev: FluxModel) -> None:
    """x0 and eps views are the exact linear-path conversions of the one transformer output."""
    cond = dev.encode(PROMPTS, cache_dir=False)
    field = dev.field(cond, H, W)
    x = dev.noise(2, H, W, torch.Generator().manual_seed(3))
    t = torch.tensor(0.4)
    v = field(t, x)
    torch.testing.assert_close(field.x0(t, x), x - 0.4 * v)
    torch.testing.assert_close(field.eps(t, x), x + 0.6 * v)


def test_one_prompt_broadcasts_and_batches_are_independent(dev: FluxModel) -> None:
    cond = dev.encode(PROMPTS, cache_dir=False)
    x = dev.noise(2, H, W, torch.Generator().manual_seed(5))
    t = torch.tensor(0.5)
    both = dev.field(cond, H, W)(t, x)
    first = dev.field(cond.select(0), H, W)(t, x[:1])
    torch.testing.assert_close(both[:1], first, atol=1e-6, rtol=1e-5)
    broadcast = dev.field(cond.select(0), H, W)(t, x)  # one prompt, two samples
    torch.testing.assert_close(broadcast[:1], first, atol=1e-6, rtol=1e-5)
    with pytest.raises(InvalidInputError, match="prompts"):
        dev.field(cond, H, W)(t, torch.cat([x, x]))


def test_field_rejects_bad_sizes_and_states(dev: FluxModel) -> None:
    cond = dev.encode(PROMPTS[:1], cache_dir=False)
    with pytest.raises(InvalidInputError, match="multiple of 4"):
        dev.field(cond, 30, 32)
    with pytest.raises(InvalidInputError, match="FluxCondition"):
        dev.field((cond.prompt_embeds, cond.pooled), H, W)
    field = dev.field(cond, H, W)
    with pytest.raises(InvalidInputError, match="shape"):
        field(torch.tensor(0.5), torch.zeros(1, 16, 64))
    bad = FluxCondition(torch.zeros(1, 4, 8), torch.zeros(1, 32))
    with pytest.raises(InvalidInputError, match="T5 dim"):
        dev.field(bad, H, W)


def test_bf16_transformer_keeps_a_float32_state() -> None:
    pytest.importorskip("solvers.grids")
    from solvers import solve

    model = FluxModel.tiny(seed=0, torch_dtype=torch.bfloat16)
    cond = model.encode(PROMPTS[:1], cache_dir=False)
    assert cond.prompt_embeds.dtype == torch.bfloat16
    field = model.field(cond, H, W)
    x1 = field.noise(1, torch.Generator().manual_seed(0))
    assert x1.dtype == torch.float32
    sol = solve(field, x1, solver="euler", grid=field.default_grid(3))
    assert sol.x.dtype == torch.float32 and bool(torch.isfinite(sol.x).all())
    # the float32 model gives nearly the same trajectory (bf16 rounding only)
    ref = FluxModel.tiny(seed=0)
    f32 = ref.field(ref.encode(PROMPTS[:1], cache_dir=False), H, W)
    x_ref = solve(f32, x1, solver="euler", grid=f32.default_grid(3)).x
    assert (sol.x - x_ref).abs().max() < 0.1 * x_ref.abs().max()


# --- noise ----------------------------------------------------------------------------------------
def test_noise_matches_diffusers_and_per_sample_generators(dev: FluxModel) -> None:
    pipe = _pipeline(dev)
    lat, _ = pipe.prepare_latents(2, 16, H, W, torch.float32, "cpu", torch.Generator().manual_seed(7))
    assert torch.equal(dev.noise(2, H, W, torch.Generator().manual_seed(7)), lat)
    gens = [torch.Generator().manual_seed(s) for s in (11, 12)]
    both = dev.noise(2, H, W, gens)
    assert torch.equal(both[1:], dev.noise(1, H, W, torch.Generator().manual_seed(12)))
    with pytest.raises(InvalidInputError, match="one per sample"):
        dev.noise(3, H, W, gens)


# --- prompts ----------------------------------------------------------------------------------------
def test_encode_equals_flux_pipeline_encode_prompt(dev: FluxModel) -> None:
    pipe = _pipeline(dev, text=True)
    with torch.no_grad():  # as the pipeline's __call__ (autograd mode may change CPU kernels)
        pe, pp, txt = pipe.encode_prompt(
            prompt=PROMPTS, prompt_2=None, device="cpu", max_sequence_length=dev.max_sequence_length
        )
    cond = dev.encode(PROMPTS, cache_dir=False)
    assert torch.equal(cond.prompt_embeds, pe) and torch.equal(cond.pooled, pp)
    assert cond.prompts == tuple(PROMPTS) and torch.equal(txt, torch.zeros(dev.max_sequence_length, 3))


def test_embedding_cache_serves_prompts_without_encoders(tmp_path) -> None:
    model = FluxModel.tiny(seed=2, embedding_cache=tmp_path)
    first = model.encode(PROMPTS + PROMPTS[:1], free_encoders=True)
    assert model.text_encoder is None and "text" not in model.loaded()
    assert len(list(tmp_path.glob("*.safetensors"))) == 2  # one file per distinct prompt
    again = model.encode(list(reversed(PROMPTS)))  # all cached: no encoder needed
    assert torch.equal(again.prompt_embeds, first.prompt_embeds[[1, 0]])
    assert torch.equal(again.pooled, first.pooled[[1, 0]])
    with pytest.raises(InvalidInputError, match="not loaded"):
        model.encode(["a prompt not in the cache"])
    # a different model never reads these files
    other = FluxModel.tiny(seed=3, embedding_cache=tmp_path)
    assert not torch.equal(other.encode(PROMPTS[:1]).pooled, first.pooled[:1])


@pytest.mark.slow
def test_import_models_does_not_need_diffusers() -> None:
    """diffusers/transformers are optional: importing the packages (and models.flux) must not load them."""
    import subprocess
    import sys

    code = (
        "import sys, models, models.flux, studies.flux, studies.registry; "
        "bad = [m for m in ('diffusers', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_encode_cache_dir_true_uses_the_environment_folder(tmp_path, monkeypatch, dev: FluxModel) -> None:
    monkeypatch.setenv("ODEFLOW_FLUX_CACHE", str(tmp_path / "env-cache"))
    cond = dev.encode(PROMPTS[:1], cache_dir=True)
    assert len(list((tmp_path / "env-cache").glob("*.safetensors"))) == 1
    assert torch.equal(cond.pooled, dev.encode(PROMPTS[:1], cache_dir=False).pooled)


def test_encode_rejects_bad_prompts(dev: FluxModel) -> None:
    for bad in ([], [1, 2], None):
        with pytest.raises(InvalidInputError, match="prompts"):
            dev.encode(bad, cache_dir=False)


# --- weights on disk --------------------------------------------------------------------------------
def test_from_pretrained_missing_folder_fails_fast_naming_files(tmp_path) -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidInputError) as info:
        FluxModel.from_pretrained(tmp_path / "nowhere")
    assert time.perf_counter() - start < 1.0
    msg = str(info.value)
    for name in ("transformer/config.json", "diffusion_pytorch_model.safetensors", "text_encoder_2", "tokenizer_2"):
        assert name in msg
    assert "nowhere" in msg
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="Hugging Face cache") as info:
        FluxModel.from_pretrained("black-forest-labs/FLUX.1-dev", cache_dir=tmp_path)
    assert time.perf_counter() - start < 1.0 and "transformer/config.json" in str(info.value)
    with pytest.raises(InvalidInputError, match="valid components"):
        FluxModel.from_pretrained(tmp_path, components=("unet",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, schnell: FluxModel):
    return schnell.save_pretrained(tmp_path_factory.mktemp("tiny-schnell"))


def test_saved_tiny_model_loads_back_bit_identically(saved, schnell: FluxModel) -> None:
    loaded = FluxModel.from_pretrained(saved, torch_dtype=torch.float32, device="cpu", embedding_cache=False)
    assert loaded.variant == "schnell" and loaded.max_sequence_length == schnell.max_sequence_length
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(schnell, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    c1, c2 = schnell.encode(PROMPTS, cache_dir=False), loaded.encode(PROMPTS)
    assert torch.equal(c1.prompt_embeds, c2.prompt_embeds) and torch.equal(c1.pooled, c2.pooled)
    x = schnell.noise(2, H, W, torch.Generator().manual_seed(0))
    t = torch.tensor(0.3)
    assert torch.equal(schnell.field(c1, H, W)(t, x), loaded.field(c2, H, W)(t, x))
    assert torch.equal(schnell.decode(x, H, W), loaded.decode(x, H, W))


def test_from_pretrained_loads_components_on_demand(saved) -> None:
    model = FluxModel.from_pretrained(saved, torch_dtype=torch.float32, device="cpu", components=("text",))
    assert model.loaded() == ("text",) and model.variant == "schnell"
    cond = model.encode(PROMPTS[:1], cache_dir=False, free_encoders=True)
    assert model.loaded() == ()
    field = model.field(cond, H, W)  # loads the transformer from the folder
    assert model.loaded() == ("transformer",) and field.guidance is None
    assert model.decode(field.noise(1), H, W).shape == (1, 3, H, W)


def test_variant_is_read_from_the_config(tmp_path, dev: FluxModel) -> None:
    root = dev.save_pretrained(tmp_path / "dev")
    cfg = json.loads((root / "transformer" / "config.json").read_text())
    assert cfg["guidance_embeds"] is True
    os.remove(root / "odeflow_flux.json")  # without our sidecar the dev default applies
    model = FluxModel.from_pretrained(root, torch_dtype=torch.float32, device="cpu", components=())
    assert model.variant == "dev" and model.max_sequence_length == 512 and model.loaded() == ()
    assert model.schedule["use_dynamic_shifting"] is True


def test_partial_folder_names_the_missing_files(tmp_path, schnell: FluxModel) -> None:
    root = schnell.save_pretrained(tmp_path / "partial")
    # a sharded transformer whose second shard never arrived
    weights = root / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.rename(root / "transformer" / "diffusion_pytorch_model-00001-of-00002.safetensors")
    index = {
        "metadata": {},
        "weight_map": {
            "a": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "b": "diffusion_pytorch_model-00002-of-00002.safetensors",
        },
    }
    (root / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    (root / "vae" / "diffusion_pytorch_model.safetensors").rename(root / "vae" / "diffusion_pytorch_model.bin")
    (root / "tokenizer_2" / "tokenizer.json").unlink()
    start = time.perf_counter()
    with pytest.raises(InvalidInputError) as info:
        FluxModel.from_pretrained(root)
    assert time.perf_counter() - start < 1.0
    msg = str(info.value)
    assert "transformer/diffusion_pytorch_model-00002-of-00002.safetensors" in msg
    assert "00001-of-00002" not in msg.split("Expected")[0]
    assert "only safetensors" in msg and "diffusion_pytorch_model.bin" in msg
    assert "tokenizer_2/tokenizer.json or spiece.model" in msg
    # the components that are complete still load
    check_weights_folder(root, components=())


def test_from_pretrained_rejects_bad_dtype(saved) -> None:
    with pytest.raises(InvalidInputError, match="torch_dtype"):
        FluxModel.from_pretrained(saved, torch_dtype=torch.int8)
