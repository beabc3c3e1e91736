"""Where fields come from: exact Gaussian mixtures, the toy catalog, learned networks, Flux.

Depends on `odeflow` and `solvers` only (DESIGN.md §2).
"""
