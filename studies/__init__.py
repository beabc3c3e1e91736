"""Experiments that turn models × solvers × grids into tables and plots; owns the CLI."""
