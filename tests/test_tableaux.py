"""Butcher tableaux: construction-time validation and the rooted-tree order conditions.

Every built-in tableau must satisfy Butcher's order conditions sum_i b_i Phi_i(tau) = 1/gamma(tau)
for all rooted trees tau with |tau| <= order (all 200 trees up to order 8 for DOP853); its
embedded weights b - b_err up to the embedded order; and its dense output
sum_i b_i(theta) Phi_i(tau) = theta^|tau| / gamma(tau) up to the interpolant's order.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from odeflow.errors import InvalidInputError
from solvers.tableaux import TABLEAUX, ButcherTableau, get_tableau, tableau_names


@cache
def rooted_trees(order: int) -> tuple[tuple, ...]:
    """All rooted trees with ``order`` nodes; a tree is a sorted tuple of its child subtrees."""
    if order == 1:
        return ((),)
    out: set[tuple] = set()

    def partitions(remaining: int, max_part: int) -> list[list[int]]:
        if remaining == 0:
            return [[]]
        res = []
        for p in range(min(remaining, max_part), 0, -1):
            for rest in partitions(remaining - p, p):
                res.append([p, *rest])
        return res

    def forests(sizes: list[int]) -> list[tuple]:
        if not sizes:
            return [()]
        res = []
        for t in rooted_trees(sizes[0]):
            for rest in forests(sizes[1:]):
                res.append((t, *rest))
        return res

    for sizes in partitions(order - 1, order - 1):
        for forest in forests(sizes):
            out.add(tuple(sorted(forest)))
    return tuple(sorted(out))


def tree_size(t: tuple) -> int:
    return 1 + sum(tree_size(c) for c in t)


def gamma(t: tuple) -> int:
    g = tree_size(t)
    for c in t:
        g *= gamma(c)
    return g


def stage_weights(t: tuple, a: np.ndarray) -> np.ndarray:
    """Phi_i(t) for every stage i: the product over children of (A Phi(child))_i."""
    phi = np.ones(a.shape[0])
    for c in t:
        phi = phi * (a @ stage_weights(c, a))
    return phi


def dense_matrix(tab: ButcherTableau) -> np.ndarray:
    s = tab.stages
    a = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        a[i, :i] = row
    return a


def test_tree_counts():
    # OEIS A000081: 1, 1, 2, 4, 9, 20, 48, 115
    assert [len(rooted_trees(n)) for n in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]


def order_residual(tab: ButcherTableau, weights: np.ndarray, p: int) -> float:
    a = dense_matrix(tab)
    worst = 0.0
    for n in range(1, p + 1):
        for t in rooted_trees(n):
            worst = max(worst, abs(weights @ stage_weights(t, a) - 1.0 / gamma(t)))
    return worst


@pytest.mark.parametrize("name", tableau_names())
def test_order_conditions_hold_up_to_stated_order(name):
    tab = get_tableau(name)
    b = np.array(tab.b)
    assert order_residual(tab, b, tab.order) < 1e-10
    # ... and fail at the next order (the stated order is the true one)
    assert order_residual(tab, b, tab.order + 1) > 1e-6


@pytest.mark.parametrize("name", [n for n in tableau_names() if TABLEAUX[n].embedded])
def test_embedded_weights_have_embedded_order(name):
    tab = get_tableau(name)
    b_hat = np.array(tab.b) - np.array(tab.b_err)
    assert order_residual(tab, b_hat, tab.embedded_order) < 1e-10
    assert order_residual(tab, b_hat, tab.embedded_order + 1) > 1e-6
    if tab.b_err2 is not None:  # DOP853's 3rd-order estimator
        b_hat3 = np.array(tab.b) - np.array(tab.b_err2)
        assert order_residual(tab, b_hat3, 3) < 1e-10


@pytest.mark.parametrize("name", [n for n in tableau_names() if TABLEAUX[n].dense is not None])
@pytest.mark.parametrize("theta", [0.1, 0.37, 0.5, 0.83, 1.0])
def test_dense_output_order_conditions(name, theta):
    tab = get_tableau(name)
    a = dense_matrix(tab)
    bt = np.array([sum(c * theta ** (m + 1) for m, c in enumerate(poly)) for poly in tab.dense])
    for n in range(1, tab.dense_order + 1):
        for t in rooted_trees(n):
            assert abs(bt @ stage_weights(t, a) - theta**n / gamma(t)) < 1e-9


@pytest.mark.parametrize(
    "name, stages, nfe, order",
    [
        ("euler", 1, 1, 1),
        ("midpoint", 2, 2, 2),
        ("heun", 2, 2, 2),
        ("ralston", 2, 2, 2),
        ("rk3", 3, 3, 3),
        ("ssprk3", 3, 3, 3),
        ("rk4", 4, 4, 4),
        ("rk38", 4, 4, 4),
        ("heun_euler", 2, 2, 2),
        ("bosh3", 4, 3, 3),
        ("dopri5", 7, 6, 5),
        ("tsit5", 7, 6, 5),
        ("dop853", 13, 12, 8),
    ],
)
def test_cost_attributes(name, stages, nfe, order):
    tab = get_tableau(name)
    assert (tab.stages, tab.nfe_per_step, tab.order) == (stages, nfe, order)


# --- validation -------------------------------------------------------------------------------
def test_valid_custom_tableau():
    tab = ButcherTableau("trap", c=(0, 1), a=((), (1,)), b=(0.5, 0.5), order=2)
    assert tab.c == (0.0, 1.0) and tab.stages == 2


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(c=(0, 0.5), a=((), (0.4,)), b=(0, 1), order=2), "sums to"),
        (dict(c=(0, 0.5), a=((), (0.5,)), b=(0.2, 0.7), order=2), "sum to"),
        (dict(c=(0, 0.5), a=((), (0.5, 0.0)), b=(0, 1), order=2), "explicit"),
        (dict(c=(0.1, 0.5), a=((), (0.5,)), b=(0, 1), order=2), "c\\[0\\]"),
        (dict(c=(0, 0.5), a=((), (0.5,)), b=(0, 1), order=2, b_err=(0.1, 0.0), embedded_order=1), "sum to"),
        (dict(c=(0, 0.5), a=((), (0.5,)), b=(0, 1), order=2, b_err=(0.1, -0.1)), "go together"),
        (dict(c=(0, 0.5, 1), a=((), (0.5,), (1, 0)), b=(0, 1, 0), order=2, fsal=True), "last row"),
        (dict(c=(0, 0.5), a=((), (0.5,)), b=(0, 1, 0), order=2), "entries"),
        (dict(c=(0, 0.5), a=((), (0.5,)), b=(0, float("nan")), order=2), "non-finite"),
        (dict(c=(0, 0.5), a=((), (0.5,)), b=(0, 1), order=0), "order"),
        (dict(c=(0, 0.5), a=((), (0.5,)), b=(0, 1), order=2, dense=((1.0,), (0.0,)), dense_order=1), "dense row"),
    ],
)
def test_invalid_tableaux_are_rejected(kwargs, msg):
    with pytest.raises(InvalidInputError, match=msg):
        ButcherTableau("bad", **kwargs)


def test_get_tableau_lists_names():
    with pytest.raises(InvalidInputError, match="rk4"):
        get_tableau("rk5")
