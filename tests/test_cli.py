"""The odeflow CLI: listings, exit codes, --set parsing; bad input writes nothing."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from odeflow.errors import InvalidInputError
from studies import cli
from studies.registry import STUDIES, load_study


@dataclass(frozen=True)
class _Cfg:
    steps: tuple[int, ...] = (4, 8)
    solvers: tuple[str, ...] = ("euler",)
    rtol: float = 1e-6
    n: int = 10
    flag: bool = False
    name: str = "a"
    tol: float | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if any(s < 1 for s in self.steps):
            raise InvalidInputError(f"steps must be >= 1, got {self.steps}")


def test_parse_values_and_overrides() -> None:
    cfg = cli.apply_overrides(
        _Cfg(), ["steps=2, 4,16", "solvers=rk4,heun", "rtol=1e-3", "n=7", "flag=yes", "name=b", "tol=none"]
    )
    assert cfg == _Cfg(steps=(2, 4, 16), solvers=("rk4", "heun"), rtol=1e-3, n=7, flag=True, name="b", tol=None)
    assert cli.apply_overrides(_Cfg(), ["tol=0.5"]).tol == 0.5
    bad = [
        ("nosuch=1", "unknown config key 'nosuch'; valid keys are: steps, solvers"),
        ("steps", "KEY=VALUE"),
        ("n=1.5", "expected an integer"),
        ("rtol=abc", "expected a number"),
        ("rtol=inf", "finite"),
        ("flag=maybe", "true or false"),
        ("steps=", "empty"),
        ("steps=4,-8", "steps must be >= 1"),
    ]
    for item, message in bad:
        with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
            cli.apply_overrides(_Cfg(), [item])


def _odeflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studies", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_list(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("studies:", "solvers:", "grids:", "paths:", "toys:", "convergence", "straightness", "sde", "linear"):
        assert word in out


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    cases = [
        (["study", "nosuch", "--out", str(out)], "valid studies are: " + ", ".join(STUDIES)),
        (["study", "straightness", "--quick", "--out", str(out), "--set", "nosuch=1"], "valid keys are"),
        (["study", "straightness", "--quick", "--out", str(out), "--seed", "x"], "--seed must be an integer"),
        (["study", "straightness", "--quick", "--out", str(out), "--seed", "-1"], "--seed must be >= 0"),
        (["study", "straightness", "--quick", "--out", str(out), "--device", "gpu0"], "unknown device"),
        (["study", "straightness", "--quick", "--out", str(out), "--threads", "0"], "--threads must be >= 1"),
        (["frobnicate"], "invalid choice"),
        (["study", "convergence", "--quick", "--out", str(out), "--set", "solvers=euler,rk5"], "valid ODE solvers are"),
        (["study", "convergence", "--quick", "--out", str(out), "--set", "steps=4,-8"], "steps must be positive"),
        (["study", "convergence", "--quick", "--out", str(out), "--set", "grids=uniform,nope"], "valid grids are"),
        (["study", "sde", "--quick", "--out", str(out), "--set", "samplers=heun@nowhere"], "valid paths are"),
        (["study", "straightness", "--quick", "--out", str(out), "--set", "problems=nope"], "valid problems are"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc_info:
            sys.exit(cli.main(argv))
        assert exc_info.value.code == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not out.exists()


@pytest.mark.slow
def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    proc = _odeflow("study", "nosuch", cwd=tmp_path)
    assert proc.returncode == 2 and "valid studies are" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tiny_study_prints_its_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "st"
    argv = ["study", "straightness", "--out", str(out), "--no-progress", "--set", "problems=dirac", "--set",
            "paths=linear", "--set", "n_samples=8", "--set", "nodes=8", "--set", "plots=false"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| dirac | linear |" in printed and "1 cell(s) computed" in printed
    assert {"results.csv", "table.md", "config.json"} <= {p.name for p in out.iterdir()}
    assert cli.main(argv) == 0 and "0 cell(s) computed, 1 reused" in capsys.readouterr().out


def test_every_registered_study_follows_the_contract() -> None:
    for name in STUDIES:
        mod = load_study(name)
        for attr in ("Config", "cells", "run_cell", "report"):
            assert hasattr(mod, attr), f"{name} lacks {attr}"
        quick = mod.Config.quick()
        assert isinstance(quick, mod.Config) and hasattr(quick, "seed") and hasattr(quick, "device")
        assert len(mod.cells(quick)) >= 1
