"""How fields are integrated: `solve`, `Solution`, the solver contract and every built-in method.

Solvers never import models (DESIGN.md §2); they depend only on `odeflow`.
"""

from solvers.adaptive import PIController, solve_adaptive
from solvers.backends import SciPy, TorchDiffEq
from solvers.base import SOLVERS, Solution, Solver, SolverState, Stats, get_solver, register, solver_names
from solvers.brownian import BrownianPath
from solvers.ddim import DDIM
from solvers.dpm_solver import DPMSolver, DPMSolverPP
from solvers.grids import (
    GRIDS,
    flux,
    flux_mu,
    get_grid,
    grid_names,
    karras,
    log_snr_uniform,
    quadratic,
    shifted,
    uniform,
)
from solvers.multistep import AB2, AB3, AB4, AdamsBashforth
from solvers.runge_kutta import (
    DOP853,
    RK3,
    RK4,
    RK38,
    SSPRK3,
    Bosh3,
    Dopri5,
    Euler,
    Heun,
    HeunEuler,
    Midpoint,
    Ralston,
    RungeKutta,
    Tsit5,
)
from solvers.sde import EulerMaruyama, SDEHeun
from solvers.solve import check_grid, solve
from solvers.tableaux import TABLEAUX, ButcherTableau, get_tableau, tableau_names
from solvers.unipc import UniPC

__all__ = [
    "SOLVERS",
    "Solution",
    "Solver",
    "SolverState",
    "Stats",
    "get_solver",
    "register",
    "solver_names",
    "solve",
    "check_grid",
    # issue 3: Runge–Kutta, tableaux, grids
    "ButcherTableau",
    "TABLEAUX",
    "get_tableau",
    "tableau_names",
    "RungeKutta",
    "Euler",
    "Midpoint",
    "Heun",
    "Ralston",
    "RK3",
    "SSPRK3",
    "RK4",
    "RK38",
    "HeunEuler",
    "Bosh3",
    "Dopri5",
    "Tsit5",
    "DOP853",
    "GRIDS",
    "get_grid",
    "grid_names",
    "uniform",
    "quadratic",
    "shifted",
    "flux",
    "flux_mu",
    "karras",
    "log_snr_uniform",
    "PIController",
    "solve_adaptive",
    "AdamsBashforth",
    "AB2",
    "AB3",
    "AB4",
    "TorchDiffEq",
    "SciPy",
    # issue 5: exponential integrators, SDE solvers, Brownian paths (OdeflowScheduler: solvers.diffusers)
    "DDIM",
    "DPMSolver",
    "DPMSolverPP",
    "UniPC",
    "EulerMaruyama",
    "SDEHeun",
    "BrownianPath",
]
