r"""Reflow study: does rectifying a learned flow straighten it, and what does that buy a few-step sampler?

For each toy (8gaussians, moons, checkerboard — Gaussian mixtures with exact densities and
fields, `models.toys`) the study

1. trains the **1-rectified flow** (1-RF): a `models.nets.TimeMLP` velocity model fitted by
   flow matching on the linear path, $x_t = (1-t)x_0 + t\,x_1$, target $x_1 - x_0$, with
   independent data and noise (Liu et al. 2022; Lipman et al. 2023);
2. **reflows** it ``rounds - 1`` times (`models.training.rectify`): fresh noise $x_1$, its ODE
   image $x_0 = \Phi_k(x_1)$ under the $k$-RF (RK4, ``coupling_steps`` steps), and the
   $(k+1)$-RF trained on those pairs, warm-started from the $k$-RF;
3. evaluates every flow, and the **exact** 1-RF field of the mixture as a reference, on the same
   noise draws (common random numbers):
   * normalised straightness $S/\mathbb E\lVert x_1 - x_0\rVert^2$ and the path-length ratio
     along RK4 trajectories (`odeflow.metrics`; $S = \int_0^1 \mathbb E\lVert(x_1 - x_0) -
     v(x_t, t)\rVert^2 dt$ by the trapezoid rule on the saved steps);
   * distribution error of 1/2/4/8-step Euler samples and of converged RK4 samples: sliced
     Wasserstein-2 against a fresh data sample and the mean NLL under the exact data density,
     each beside its sample-size floor (the same metric for a perfect sampler);
4. measures the 1-RF's **field error**: the RMS of $v_\theta(t, x) - v^*(t, x)$ over
   $x \sim p_t$ (the exact marginal) at ``field_times`` midpoints $t \in (0, 1)$, against the
   exact mixture velocity $v^* = \mathbb E[x_1 - x_0 | x_t = x]$ (`models.gmm`), averaged over
   $t$ and also divided by the RMS of $v^*$.

Liu et al. (2022, Thm. 3.7) show that the expected straightness of the $k$-RF decays like
$O(1/k)$; their CIFAR-10 1-step FIDs (378 for 1-RF, 12.2 for 2-RF) are the image-scale version of
the 1-step Euler column here. The reflowed flow is straighter, but it is fitted to the previous
flow's *learned* coupling, so it inherits that flow's errors: reflow cannot beat the converged
samples of the flow it was distilled from.

One cell per toy (a round needs the previous round's network); every row carries a ``kind``:
``"flow"`` (straightness, training), ``"sampler"`` (distribution errors), ``"field"`` (1-RF field
error against $t$), ``"trajectory"`` / ``"euler1"`` (states for the trajectory plots).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.nets import TimeMLP
from models.training import T_SAMPLINGS, rectify, train
from odeflow import metrics
from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError
from odeflow.paths import LinearPath
from solvers.base import get_solver, solver_names
from solvers.grids import uniform
from solvers.runge_kutta import RK4, Euler
from solvers.solve import solve
from studies.problems import get_problem, problem_names
from studies.report import Summary, new_figure, save_figure
from studies.runner import derive_seed

NAME = "reflow"
TITLE = "Reflow: 1-RF → 2-RF → 3-RF on toy data"
CACHE_VERSION = 1

PATH = LinearPath()
FLOW_COLORS = {"exact": "0.35", "1-RF": "tab:blue", "2-RF": "tab:orange", "3-RF": "tab:green", "4-RF": "tab:red"}


@dataclass(frozen=True)
class Config:
    """Reflow study settings (defaults: the full study, ~6.5 minutes of CPU on one thread)."""

    toys: tuple[str, ...] = ("8gaussians", "moons", "checkerboard")
    rounds: int = 3
    width: int = 128
    depth: int = 3
    train_steps: int = 5000
    reflow_steps: int = 3000
    batch_size: int = 512
    lr: float = 2e-3
    t_sampling: str = "uniform"
    n_pairs: int = 20000
    coupling_solver: str = "rk4"
    coupling_steps: int = 32
    euler_steps: tuple[int, ...] = (1, 2, 4, 8)
    reference_steps: int = 32
    n_eval: int = 4000
    field_times: int = 10
    plot_trajectories: int = 24
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name, lo in (
            ("rounds", 1),
            ("width", 1),
            ("depth", 1),
            ("train_steps", 1),
            ("reflow_steps", 1),
            ("batch_size", 1),
            ("n_pairs", 1),
            ("coupling_steps", 1),
            ("reference_steps", 2),
            ("n_eval", 16),
            ("field_times", 1),
            ("plot_trajectories", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise InvalidInputError(f"{name} must be an integer >= {lo}, got {value!r}")
        if self.rounds > 4:
            raise InvalidInputError(f"rounds must be at most 4 (1-RF … 4-RF), got {self.rounds}")
        if not (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and 0 < self.lr < 1):
            raise InvalidInputError(f"lr must be a number in (0, 1), got {self.lr!r}")
        if self.t_sampling not in T_SAMPLINGS:
            raise InvalidInputError(f"unknown t_sampling {self.t_sampling!r}; valid: {', '.join(T_SAMPLINGS)}")
        if not self.toys:
            raise InvalidInputError("toys must name at least one toy")
        if not self.euler_steps or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.euler_steps
        ):
            raise InvalidInputError(f"euler_steps must be positive integers, got {self.euler_steps!r}")

    @classmethod
    def quick(cls) -> Config:
        """The ``--quick`` variant: small nets, short training (under a minute of CPU, one thread)."""
        return cls(
            width=64,
            train_steps=800,
            reflow_steps=400,
            batch_size=256,
            lr=5e-3,
            n_pairs=4000,
            coupling_steps=16,
            reference_steps=16,
            n_eval=1000,
            plot_trajectories=16,
        )


def validate(config: Config) -> None:
    for toy in config.toys:
        if toy not in problem_names() or get_problem(toy).dim != 2 or not get_problem(toy).has_density:
            valid = [p for p in problem_names() if get_problem(p).dim == 2 and get_problem(p).has_density]
            raise InvalidInputError(
                f"unknown or unsupported toy {toy!r}; valid toys (2-d, with a density) are: {', '.join(valid)}"
            )
    if config.coupling_solver not in solver_names():
        raise InvalidInputError(
            f"unknown coupling_solver {config.coupling_solver!r}; valid solvers are: {', '.join(solver_names())}"
        )
    if get_solver(config.coupling_solver).adaptive:
        raise InvalidInputError("coupling_solver must be a fixed-step solver (the grid has coupling_steps steps)")


def cells(config: Config) -> list[dict[str, Any]]:
    return [{"toy": toy} for toy in config.toys]


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def train_flows(config: Config, toy: str) -> tuple[list[tuple[str, ProbabilityFlow]], list[dict[str, Any]]]:
    """Train the 1-RF and its reflows on ``toy``; returns ``[(label, flow)]`` and per-flow training facts."""
    problem = get_problem(toy)
    device = torch.device(config.device)
    net = TimeMLP(problem.dim, width=config.width, depth=config.depth, seed=derive_seed(config.seed, toy, "init")).to(
        device
    )
    common = {"batch_size": config.batch_size, "lr": config.lr, "t_sampling": config.t_sampling}
    start = time.perf_counter()
    first = train(
        net, problem.data, PATH, steps=config.train_steps, seed=derive_seed(config.seed, toy, "train"), **common
    )
    facts = [
        {
            "flow": "1-RF",
            "train_steps": config.train_steps,
            "final_loss": first.final_loss,
            "coupling_nfe": 0,
            "train_wall_s": time.perf_counter() - start,
        }
    ]
    flows = [("1-RF", net.flow(PATH))]
    if config.rounds > 1:
        start = time.perf_counter()
        results = rectify(
            flows[0][1],
            config.rounds - 1,
            solver=config.coupling_solver,
            grid=uniform(config.coupling_steps),
            n_pairs=config.n_pairs,
            steps=config.reflow_steps,
            seed=derive_seed(config.seed, toy, "reflow"),
            **common,
        )
        per_round = (time.perf_counter() - start) / len(results)
        for k, res in enumerate(results, start=2):
            flows.append((f"{k}-RF", res.flow))
            facts.append(
                {
                    "flow": f"{k}-RF",
                    "train_steps": config.reflow_steps,
                    "final_loss": res.train.final_loss,
                    "coupling_nfe": res.coupling_nfe,
                    "train_wall_s": per_round,
                }
            )
    return flows, facts


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def trajectory_metrics(flow: Any, x1: torch.Tensor, steps: int) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """RK4 trajectories from ``x1`` (``steps`` uniform steps): straightness facts, times and states.

    Velocities are evaluated at every saved state (``steps + 1`` extra evaluations); the time
    integrals use the trapezoid rule on the saved steps.
    """
    sol = solve(flow, x1, solver=RK4(), grid=uniform(steps), save="steps")
    ts, xs = sol.ts, sol.xs
    vs = torch.stack([flow(float(t), x) for t, x in zip(ts.tolist(), xs)])
    facts = {
        "S": metrics.straightness(ts, xs, vs),
        "S_norm": metrics.normalized_straightness(ts, xs, vs),
        "length_ratio": metrics.path_length_ratio(ts, xs, vs),
        "chord_sq": float(((xs[0] - xs[-1]).double() ** 2).sum(-1).mean()),
        "rk4_nfe": sol.stats.nfe,
    }
    return facts, ts, xs


@torch.no_grad()
def field_error(flow: Any, problem: Any, times: int, n: int, seed: int) -> list[dict[str, float]]:
    r"""RMS of $v_\theta - v^*$ over $x \sim p_t$ at ``times`` midpoints of (0, 1), with the RMS of $v^*$."""
    exact = problem.field(PATH)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(times):
        t = (i + 0.5) / times
        x0 = problem.data.sample(n, generator=g, dtype=torch.float64)
        x = (1.0 - t) * x0 + t * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        ref = exact.velocity(t, x)
        got = flow(t, x.float()).double()
        rows.append(
            {
                "t": t,
                "field_rmse": float(((got - ref) ** 2).sum(-1).mean().sqrt()),
                "field_rms_exact": float((ref**2).sum(-1).mean().sqrt()),
            }
        )
    return rows


def _floors(problem: Any, config: Config, toy: str) -> dict[str, float]:
    def draw(n: int, s: int) -> torch.Tensor:
        return problem.sample_data(n, derive_seed(config.seed, toy, "floor", s))

    sw2 = metrics.sample_size_floor(metrics.sliced_w2, draw, config.n_eval, repeats=3)
    nll = metrics.sample_size_floor(
        lambda x: metrics.mean_nll(x, problem.log_prob), draw, config.n_eval, two_sample=False, repeats=3
    )
    return {"sliced_w2_floor": sw2.mean, "sliced_w2_floor_std": sw2.std, "nll_floor": nll.mean}


def run_cell(config: Config, cell: dict[str, Any]) -> list[dict[str, Any]]:
    toy = cell["toy"]
    problem = get_problem(toy)
    flows, facts = train_flows(config, toy)
    exact = problem.field(PATH)
    g = torch.Generator().manual_seed(derive_seed(config.seed, toy, "eval"))
    x1 = torch.randn(config.n_eval, problem.dim, generator=g)
    reference = problem.sample_data(config.n_eval, derive_seed(config.seed, toy, "reference"))
    floors = _floors(problem, config, toy)
    m = min(config.plot_trajectories, config.n_eval)
    keep = list(range(0, config.reference_steps + 1, max(1, config.reference_steps // 16)))
    if keep[-1] != config.reference_steps:
        keep.append(config.reference_steps)

    rows: list[dict[str, Any]] = []
    entries = [("exact", exact, None)] + [(label, flow, fact) for (label, flow), fact in zip(flows, facts)]
    for label, flow, fact in entries:
        x_start = x1.double() if label == "exact" else x1
        start = time.perf_counter()
        traj, ts, xs = trajectory_metrics(flow, x_start, config.reference_steps)
        row = {"kind": "flow", "flow": label, **traj, "eval_wall_s": time.perf_counter() - start}
        if fact is not None:
            row.update({k: v for k, v in fact.items() if k != "flow"})
        if label == "1-RF":
            err = field_error(flow, problem, config.field_times, config.n_eval, derive_seed(config.seed, toy, "field"))
            rows.extend({"kind": "field", "flow": label, **e} for e in err)
            row["field_rmse"] = float(np.mean([e["field_rmse"] for e in err]))
            row["field_rms_exact"] = float(np.mean([e["field_rms_exact"] for e in err]))
        rows.append(row)
        samplers = [("euler", k) for k in config.euler_steps] + [("rk4", config.reference_steps)]
        for solver, steps in samplers:
            if solver == "rk4":
                x0, nfe = xs[-1], traj["rk4_nfe"]
            else:
                sol = solve(flow, x_start, solver=Euler(), grid=uniform(steps))
                x0, nfe = sol.x, sol.stats.nfe
            x0 = x0.double()
            finite = bool(torch.isfinite(x0).all())
            rows.append(
                {
                    "kind": "sampler",
                    "flow": label,
                    "solver": solver,
                    "steps": steps,
                    "nfe": nfe,
                    "sliced_w2": metrics.sliced_w2(x0, reference) if finite else math.nan,
                    "nll": metrics.mean_nll(x0, problem.log_prob) if finite else math.nan,
                    **floors,
                }
            )
        for j in range(m):
            for i in keep:
                p = xs[i, j].double()
                rows.append({"kind": "trajectory", "flow": label, "traj": j, "t": float(ts[i]), "x": p[0], "y": p[1]})
        one = solve(flow, x_start[:m], solver=Euler(), grid=uniform(1)).x.double()
        rows.extend({"kind": "euler1", "flow": label, "traj": j, "x": one[j, 0], "y": one[j, 1]} for j in range(m))
    return rows


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def summary_table(df: pd.DataFrame, config: Config) -> pd.DataFrame:
    """One line per toy × flow (and a floor line per toy): straightness, SW2 and NLL per Euler step count."""
    flows = df[df["kind"] == "flow"]
    samp = df[df["kind"] == "sampler"]
    lines = []
    for toy in df["toy"].unique():
        for label in flows[flows["toy"] == toy]["flow"]:
            f = flows[(flows["toy"] == toy) & (flows["flow"] == label)].iloc[0]
            line: dict[str, Any] = {"toy": toy, "flow": label, "S_norm": f["S_norm"], "length_ratio": f["length_ratio"]}
            s = samp[(samp["toy"] == toy) & (samp["flow"] == label)]
            for _, r in s.iterrows():
                tag = f"E{int(r['steps'])}" if r["solver"] == "euler" else "RK4"
                line[f"SW2 {tag}"] = r["sliced_w2"]
            for _, r in s.iterrows():
                if r["solver"] == "euler" and int(r["steps"]) in (1, max(config.euler_steps)) or r["solver"] == "rk4":
                    tag = f"E{int(r['steps'])}" if r["solver"] == "euler" else "RK4"
                    line[f"NLL {tag}"] = r["nll"]
            lines.append(line)
        s = samp[samp["toy"] == toy].iloc[0]
        floor = {"toy": toy, "flow": "floor (data)"}
        for col in [c for c in lines[-1] if c.startswith("SW2")]:
            floor[col] = s["sliced_w2_floor"]
        for col in [c for c in lines[-1] if c.startswith("NLL")]:
            floor[col] = s["nll_floor"]
        lines.append(floor)
    return pd.DataFrame(lines)


def _notes(df: pd.DataFrame, config: Config) -> list[str]:
    flows = df[df["kind"] == "flow"].set_index(["toy", "flow"])
    samp = df[df["kind"] == "sampler"]
    one = samp[(samp["solver"] == "euler") & (samp["steps"] == 1)].set_index(["toy", "flow"])
    ratios, errs, floors = [], [], []
    for toy in df["toy"].unique():
        if (toy, "2-RF") in flows.index:
            r = flows.loc[(toy, "2-RF"), "S_norm"] / flows.loc[(toy, "1-RF"), "S_norm"]
            w1, w2 = one.loc[(toy, "1-RF"), "sliced_w2"], one.loc[(toy, "2-RF"), "sliced_w2"]
            ratios.append(f"{toy} {r:.2g} (1-step SW2 {w1:.3f} → {w2:.3f})")
        f = flows.loc[(toy, "1-RF")]
        errs.append(f"{toy} {f['field_rmse']:.3f} ({f['field_rmse'] / f['field_rms_exact']:.1%} of the RMS of v*)")
        s = samp[samp["toy"] == toy].iloc[0]
        floors.append(f"{toy} {s['sliced_w2_floor']:.3f} ± {s['sliced_w2_floor_std']:.3f}")
    notes = [
        "`S_norm` = S / E‖x₁ − x₀‖² along RK4 trajectories (0 for straight lines at constant speed); "
        "`length_ratio` = E∫‖v‖dt / E‖x₁ − x₀‖ (1 for straight lines). `SW2 Ek` / `NLL Ek`: sliced W2 "
        "to a data sample and mean NLL under the exact data density of k-step Euler samples; `RK4`: "
        f"the same flow solved with {config.reference_steps} RK4 steps. `exact` is the exact 1-RF field "
        "of the mixture (no training error). The `floor (data)` line is each metric for a perfect "
        "sampler at the same sample size (for NLL: the data entropy); NLL rewards samples that collapse "
        "onto the modes, so a value below the floor is not better than the floor.",
        f"SW2 floor, mean ± sd over 3 pairs of data samples of size {config.n_eval}: "
        + "; ".join(floors)
        + ". SW2 differences smaller than the sd are sample noise.",
    ]
    if ratios:
        notes.append("Straightness ratio S_norm(2-RF) / S_norm(1-RF): " + "; ".join(ratios) + ".")
    notes.append(
        f"1-RF field error, RMS of v_θ − v* over x ~ p_t averaged over the midpoints of {config.field_times} "
        "equal intervals of (0, 1): " + "; ".join(errs) + ". It peaks at t ≈ 0.1–0.3, where the exact "
        "trajectories split between narrow components and the exact field is sharp (`field_error.png`)."
    )
    notes.append(
        "Reflow trains on the previous flow's *learned* coupling, so a k-RF inherits the sample error "
        "of the (k−1)-RF's ODE samples; what it gains is that 1–2 Euler steps reach that level."
    )
    return notes


def report(df: pd.DataFrame, out: Path, config: Config) -> Summary:
    plots = [_w2_plot(df, out), _field_plot(df, out)]
    plots += [_trajectory_plot(df, toy, out) for toy in df["toy"].unique()]
    return Summary(table=summary_table(df, config), notes=_notes(df, config), plots=plots, title=TITLE, digits=3)


def _w2_plot(df: pd.DataFrame, out: Path) -> Path:
    toys = list(df["toy"].unique())
    fig, axes = new_figure(ncols=len(toys), size=(3.8, 3.4))
    axes = np.atleast_1d(axes)
    samp = df[(df["kind"] == "sampler") & (df["solver"] == "euler")]
    for ax, toy in zip(axes, toys):
        s = samp[samp["toy"] == toy]
        for label in s["flow"].unique():
            r = s[s["flow"] == label].sort_values("steps")
            ls = "--" if label == "exact" else "-"
            ax.plot(r["steps"], r["sliced_w2"], ls, marker="o", ms=4, label=label, color=FLOW_COLORS.get(label))
        floor = float(s["sliced_w2_floor"].iloc[0])
        ax.axhline(floor, color="k", lw=0.8, ls=":", label="floor (data vs data)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("Euler steps (NFE)")
        ax.set_title(toy, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel("sliced W2 to data")
    axes[0].legend(fontsize=7)
    fig.suptitle("Few-step Euler sampling error by reflow round", fontsize=11)
    return save_figure(fig, out / "reflow_w2.png")


def _field_plot(df: pd.DataFrame, out: Path) -> Path:
    fig, ax = new_figure(size=(5.4, 4.4))
    f = df[df["kind"] == "field"]
    for toy in f["toy"].unique():
        r = f[f["toy"] == toy].sort_values("t")
        (line,) = ax.plot(r["t"], r["field_rmse"], marker="o", ms=3, label=f"{toy}: RMS(v_θ − v*)")
        ax.plot(r["t"], r["field_rms_exact"], ":", color=line.get_color(), label=f"{toy}: RMS(v*)")
    ax.set_yscale("log")
    ax.set_xlabel("t  (0 = data, 1 = noise)")
    ax.set_ylabel("RMS over x ~ p_t")
    ax.set_title("1-RF: learned vs exact mixture velocity", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return save_figure(fig, out / "field_error.png")


def _trajectory_plot(df: pd.DataFrame, toy: str, out: Path) -> Path:
    tr = df[(df["kind"] == "trajectory") & (df["toy"] == toy)]
    e1 = df[(df["kind"] == "euler1") & (df["toy"] == toy)]
    labels = list(tr["flow"].unique())
    fig, axes = new_figure(ncols=len(labels), size=(3.2, 3.4))
    axes = np.atleast_1d(axes)
    data = get_problem(toy).sample_data(1500, 12345).numpy()
    for ax, label in zip(axes, labels):
        ax.scatter(data[:, 0], data[:, 1], s=1, color="0.85", zorder=1)
        t_l = tr[tr["flow"] == label]
        for _, path in t_l.groupby("traj"):
            path = path.sort_values("t")
            ax.plot(path["x"], path["y"], lw=0.7, alpha=0.7, color=FLOW_COLORS.get(label, "tab:blue"), zorder=2)
        ends = t_l[t_l["t"] == t_l["t"].min()]
        starts = t_l[t_l["t"] == t_l["t"].max()]
        ax.scatter(starts["x"], starts["y"], s=6, color="0.5", zorder=3, label="x₁ noise")
        ax.scatter(ends["x"], ends["y"], s=9, color="k", zorder=4, label="ODE end (RK4)")
        one = e1[e1["flow"] == label]
        ax.scatter(one["x"], one["y"], s=12, marker="x", color="tab:red", zorder=5, label="1 Euler step")
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("x₁ coordinate")
    axes[0].set_ylabel("x₂ coordinate")
    axes[0].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"Trajectories from t = 1 to 0 by reflow round, {toy}", fontsize=11)
    return save_figure(fig, out / f"trajectories_{toy}.png")


def run(config: Config | None = None, out: str | Path | None = None, **kw: Any) -> pd.DataFrame:
    """Run the study through `studies.runner.run_study` and return its rows."""
    from studies.runner import run_study  # noqa: PLC0415

    return run_study(sys.modules[__name__], config or Config(), out, **kw).df
