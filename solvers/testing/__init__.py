"""Property testing for any solver — ours or yours: analytic problems, hypothesis strategies,
assertions and `check_solver` (the analogue of scikit-learn's ``check_estimator``).

```python
from solvers.testing import check_solver
check_solver(MySolver())            # raises one SolverCheckError listing every failed property
```

Modules:

- `solvers.testing.problems`: problems with exact solutions (`Problem`: ``field``, ``x1``, ``exact(t)``)
  and SDE problems with exact pathwise solutions;
- `solvers.testing.strategies`: hypothesis strategies (needs ``hypothesis``; loaded on first use);
- `solvers.testing.assertions`: ``assert_order``, ``assert_exact_for_polynomials``, ``assert_nfe``,
  ``assert_matches``, ``assert_time_reversible_consistency``, ``assert_strong_order``,
  ``assert_weak_order``;
- `solvers.testing.check`: ``check_solver`` and the pytest helpers.

Only the strategies need hypothesis; everything else runs with the core dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

from solvers.testing._drive import counting, run_steps
from solvers.testing.assertions import (
    OrderResult,
    PropertyFailure,
    SolverCheckError,
    assert_exact_for_polynomials,
    assert_matches,
    assert_nfe,
    assert_order,
    assert_strong_order,
    assert_time_reversible_consistency,
    assert_weak_order,
    fit_order,
    measure_order,
)
from solvers.testing.check import (
    CHECKS,
    assert_adaptive_accuracy,
    check_solver,
    check_solver_test,
    parametrize_solvers,
)
from solvers.testing.problems import (
    LINEAR_VARIANTS,
    GridBrownianPath,
    Problem,
    SDEProblem,
    default_problems,
    default_sde_problems,
    gaussian_flow_problem,
    gbm_problem,
    linear_problem,
    linear_sde_problem,
    logistic_problem,
    polynomial_problem,
    reversible_problems,
    riccati_problem,
)
from solvers.testing.timegrid import GRID_KINDS, time_grid

_STRATEGIES = (
    "linear_problems",
    "scalar_problems",
    "polynomial_problems",
    "gaussian_paths",
    "gaussian_flow_problems",
    "ode_problems",
    "sde_problems",
    "grids",
    "batched_states",
)

__all__ = [
    "CHECKS",
    "GRID_KINDS",
    "LINEAR_VARIANTS",
    "GridBrownianPath",
    "OrderResult",
    "Problem",
    "PropertyFailure",
    "SDEProblem",
    "SolverCheckError",
    "assert_adaptive_accuracy",
    "assert_exact_for_polynomials",
    "assert_matches",
    "assert_nfe",
    "assert_order",
    "assert_strong_order",
    "assert_time_reversible_consistency",
    "assert_weak_order",
    "check_solver",
    "check_solver_test",
    "counting",
    "default_problems",
    "default_sde_problems",
    "fit_order",
    "gaussian_flow_problem",
    "gbm_problem",
    "linear_problem",
    "linear_sde_problem",
    "logistic_problem",
    "measure_order",
    "parametrize_solvers",
    "polynomial_problem",
    "reversible_problems",
    "riccati_problem",
    "run_steps",
    "time_grid",
    *_STRATEGIES,
]


def __getattr__(name: str) -> Any:
    """Strategies are imported on first use, so that hypothesis is needed only for them."""
    if name in _STRATEGIES or name == "strategies":
        strategies = importlib.import_module("solvers.testing.strategies")
        return strategies if name == "strategies" else getattr(strategies, name)
    raise AttributeError(f"module 'solvers.testing' has no attribute {name!r}")
