"""The four packages import only up the chain odeflow <- solvers <- models <- studies (DESIGN.md §2)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ORDER = ["odeflow", "solvers", "models", "studies"]


def _imported_top_levels(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ORDER)
def test_imports_point_only_up(package):
    forbidden = set(ORDER[ORDER.index(package) + 1 :])
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imported_top_levels(p) & forbidden)
        for p in (ROOT / package).rglob("*.py")
        if _imported_top_levels(p) & forbidden
    }
    assert not offenders, f"{package} must not import {sorted(forbidden)}: {offenders}"


def test_every_package_imports_without_optional_extras():
    import importlib

    for name in ORDER:
        importlib.import_module(name)
