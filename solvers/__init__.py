"""How fields are integrated: `solve`, `Solution`, the solver contract and every built-in method.

Solvers never import models (DESIGN.md §2); they depend only on `odeflow`.
"""

from solvers.base import SOLVERS, Solution, Solver, SolverState, Stats, get_solver, register, solver_names
from solvers.solve import check_grid, solve

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
]
