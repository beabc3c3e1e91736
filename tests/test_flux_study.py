"""The flux study and the GPU check script, on CPU with tiny random models.

The study is run end to end twice: once through a saved tiny model standing in for local
FLUX.1 [dev] weights (the real loading path: folder check, cached prompt encoding, encoders freed,
transformer loaded) and once as ``odeflow study flux --quick`` through the CLI.
"""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from odeflow.errors import InvalidInputError  # noqa: E402
from studies import flux as study  # noqa: E402
from studies.runner import run_study  # noqa: E402

pytestmark = pytest.mark.flux


def _small(**kw):
    base = dict(
        n_prompts=1,
        n_seeds=1,
        height=16,
        width=16,
        dtype="float32",
        reference_steps=8,
        solvers=("euler", "rk4"),
        grids=("default",),
        nfe=(2, 4),
        schnell_nfe=(1, 2),
        tolerances=(),
        images=False,
        image_solvers=("euler",),
        timing_repeats=1,
        device="cpu",
    )
    base.update(kw)
    return study.Config(**base)


def test_config_rejects_bad_values_listing_valid_ones() -> None:
    with pytest.raises(InvalidInputError, match="valid variants are"):
        _small(variants=("flux-pro",))
    with pytest.raises(InvalidInputError, match="valid solver labels are"):
        _small(solvers=("euler", "magic"))
    with pytest.raises(InvalidInputError, match="valid grids are"):
        _small(grids=("wiggly",))
    with pytest.raises(InvalidInputError, match="n_prompts"):
        _small(n_prompts=len(study.PROMPTS) + 1)
    with pytest.raises(InvalidInputError, match="NFE budgets"):
        _small(nfe=(0, 4))
    with pytest.raises(InvalidInputError, match="dtype"):
        _small(dtype="int8")


def test_no_weights_fails_at_once_naming_the_layout(tmp_path) -> None:
    config = _small(variants=("dev", "schnell"), dev_weights=str(tmp_path / "a"), schnell_weights=str(tmp_path / "b"))
    start = time.perf_counter()
    with pytest.raises(InvalidInputError) as info:
        study.validate(config)
    assert time.perf_counter() - start < 1.0
    msg = str(info.value)
    assert "--quick" in msg and "transformer/config.json" in msg and "dev:" in msg and "schnell:" in msg
    assert study.cells(config) == []


def test_cells_are_prompt_seed_pairs_of_available_variants(tmp_path) -> None:
    config = _small(variants=("tiny-dev", "dev"), dev_weights=str(tmp_path / "missing"), n_prompts=2, n_seeds=3)
    cells = study.cells(config)
    assert cells == [{"variant": "tiny-dev", "prompt": p, "seed": s} for p in range(2) for s in range(3)]
    status = study.availability(config)
    assert status["tiny-dev"] is None and "does not exist" in status["dev"]


@pytest.fixture(scope="module")
def local_dev(tmp_path_factory):
    """A tiny dev-architecture model saved in the diffusers layout: stands in for local FLUX.1 weights."""
    from models.flux import FluxModel

    return FluxModel.tiny(seed=4, guidance_embeds=True).save_pretrained(tmp_path_factory.mktemp("local-dev"))


@pytest.mark.slow
def test_study_runs_on_local_weights_with_cached_prompts(tmp_path, local_dev) -> None:
    pytest.importorskip("solvers.grids")
    cache = tmp_path / "emb"
    config = _small(
        variants=("dev",),
        dev_weights=str(local_dev),
        embedding_cache=str(cache),
        n_seeds=2,
        solvers=("euler", "rk4", "dpmpp_2m"),
    )
    result = run_study(study, config, tmp_path / "out", progress=False)
    df = result.df
    assert result.computed == 2 and len(list(cache.glob("*.safetensors"))) == 1
    assert study._SESSION["current"].model.loaded() == ("transformer", "vae")  # encoders were freed
    refs, solves = df[df["kind"] == "reference"], df[df["kind"] == "solve"]
    assert len(refs) == 2 and (refs["nfe"] == 4 * config.reference_steps).all()
    assert refs["straightness"].gt(0).all() and refs["path_length_ratio"].ge(1.0 - 1e-6).all()
    assert (solves["status"] == "ok").all()
    assert set(solves["solver"]) == {"euler", "rk4", "dpmpp_2m"} and set(solves["grid"]) == {"flux"}
    fixed = solves[solves["solver"].isin(["euler", "dpmpp_2m"])]
    assert (fixed["nfe"] == fixed["budget"]).all()  # 1 NFE per step: the budget is the NFE
    assert (solves["psnr_db"] > 10).all() and solves["latent_rmse"].gt(0).all()
    # more steps, closer to the reference
    euler = solves[solves["solver"] == "euler"].groupby("budget")["latent_rmse"].mean()
    assert euler.loc[4] < euler.loc[2]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "PSNR" in table and "Reference and straightness" in table
    timings = pd.read_csv(tmp_path / "out" / "timings.csv")
    assert {"solve_wall_s", "eval_wall_s"} <= set(timings.columns)
    assert "solve_wall_s" not in pd.read_csv(tmp_path / "out" / "results.csv").columns
    # a rerun resumes: nothing recomputed, the same results.csv
    first = (tmp_path / "out" / "results.csv").read_bytes()
    again = run_study(study, config, tmp_path / "out", progress=False)
    assert again.computed == 0 and again.reused == 2
    assert (tmp_path / "out" / "results.csv").read_bytes() == first


def test_noise_is_paired_across_variants_and_independent_of_batching() -> None:
    from models.flux import FluxModel

    dev, schnell = FluxModel.tiny(seed=0), FluxModel.tiny(seed=1, guidance_embeds=False)
    seed = study.derive_seed(0, "noise", 1)
    a = dev.noise(1, 16, 16, torch.Generator().manual_seed(seed))
    b = schnell.noise(1, 16, 16, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)


@pytest.mark.slow
def test_cli_quick_run_writes_tables_plots_and_images(tmp_path, capsys) -> None:
    pytest.importorskip("solvers.grids")
    from studies.cli import main

    out = tmp_path / "flux"
    assert main(["study", "flux", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "adversarially distilled" in printed and "tiny random model" in printed
    for name in (
        "results.csv",
        "timings.csv",
        "table.md",
        "config.json",
        "error_vs_nfe_tiny-dev.png",
        "error_vs_nfe_tiny-schnell.png",
        "images_tiny-dev.png",
        "images_tiny-schnell.png",
    ):
        assert (out / name).is_file(), name
    df = pd.read_csv(out / "results.csv")
    solves = df[df["kind"] == "solve"]
    assert set(solves["variant"]) == {"tiny-dev", "tiny-schnell"}
    assert set(study.Config.quick().solvers) <= set(solves["solver"])
    assert (solves["status"] == "ok").all(), solves[solves["status"] != "ok"][["solver", "status"]]
    assert solves["psnr_db"].map(math.isfinite).all()
    adaptive = solves[solves["tol"].notna()]
    assert len(adaptive) > 0 and (adaptive["nfe"] > 0).all()
    fixed = solves[solves["budget"].notna()]
    assert (fixed["nfe"] <= fixed["budget"]).all()  # a budget caps the NFE, Runge–Kutta start included
    ab3 = fixed[fixed["solver"] == "ab3"].set_index("budget")["nfe"]
    assert ab3.loc[8].min() == 8 and ab3.loc[4].min() == 3  # 2 RK3 start steps + 2 AB steps; 1 RK3 step


def test_steps_for_budget_counts_the_real_nfe() -> None:
    assert [study.steps_for_budget("euler", b) for b in (1, 4)] == [1, 4]
    assert [study.steps_for_budget("heun", b) for b in (1, 2, 5)] == [0, 1, 2]
    assert [study.steps_for_budget("rk4", b) for b in (3, 4, 16)] == [0, 1, 4]
    assert [study.steps_for_budget("ab3", b) for b in (2, 3, 8, 16)] == [0, 1, 4, 12]


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys) -> None:
    from studies.cli import main

    out = tmp_path / "never"
    missing = ["--set", f"dev_weights={tmp_path}/x", "--set", f"schnell_weights={tmp_path}/y", "--set", "solvers=euler"]
    assert main(["study", "flux", "--out", str(out), *missing]) == 2
    assert "no FLUX.1 variant can run" in capsys.readouterr().err
    assert main(["study", "flux", "--quick", "--out", str(out), "--set", "variants=tiny-dev,nope"]) == 2
    assert "valid variants are" in capsys.readouterr().err
    assert not out.exists()


# --- the GPU check script -------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_on_cpu(tmp_path, capsys) -> None:
    from studies.flux_gpu_check import main

    assert main(["--out", str(tmp_path)]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.json").exists()


def test_gpu_check_script_runs_with_the_tiny_model(tmp_path) -> None:
    import json

    pytest.importorskip("solvers.grids")
    from studies.flux_gpu_check import main

    args = ["--tiny", "--steps", "3", "--repeats", "1", "--height", "16", "--width", "16", "--out", str(tmp_path)]
    assert main(args) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(result["steps_per_s"]) == {"ours", "pipeline", "loop"}
    # same Euler integration as diffusers' pipeline and its written-out loop (float32 tiny model)
    assert result["max_abs_diff_vs_pipeline"] <= 1e-5 * max(1.0, result["latent_scale"])
    assert result["max_abs_diff_vs_loop"] <= 1e-5 * max(1.0, result["latent_scale"])
    assert "ours/pipeline" in (tmp_path / "gpu_check.md").read_text()
