"""The ``odeflow`` command line (also ``python -m studies``).

::

    odeflow list
    odeflow study NAME [--quick] [--out DIR] [--device D] [--seed S] [--set key=value ...]
                       [--fresh] [--no-progress] [--threads N]

``list`` shows the studies, solvers, grids, paths and toys. ``study`` runs a study through the
resumable runner (`studies.runner`) and prints its table. ``--set`` overrides config fields
(``--set solvers=euler,rk4 --set steps=4,8,16``); bad input — an unknown study, an unknown
field, a value of the wrong type or out of range (an unknown solver, negative steps, …) — exits
with status 2 and a message listing what is valid, before anything is written. Under
``torchrun --nproc-per-node N $(which odeflow) study …`` the cells are sharded across ranks
and rank 0 writes the outputs. An interrupted run (Ctrl-C, a killed job) is resumed by
running the same command again.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from odeflow.errors import InvalidInputError

__all__ = ["main", "build_parser", "apply_overrides", "parse_value"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with errors that say what is valid (status 2, like argparse itself)."""

    def error(self, message: str) -> typing.NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="odeflow", description="odeflow: numerics of generative models — studies and listings")
    sub = parser.add_subparsers(dest="command", metavar="{list,study}", parser_class=_Parser)
    sub.required = True
    sub.add_parser("list", help="list studies, solvers, grids, paths and toys")
    st = sub.add_parser("study", help="run a study and print its table")
    st.add_argument("name", help="study name (see `odeflow list`)")
    st.add_argument("--quick", action="store_true", help="the small config (well under a minute on 2 CPU cores)")
    st.add_argument("--out", default=None, help="output folder (default results/<study>)")
    st.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:N (default: the config's)")
    st.add_argument("--seed", default=None, help="base random seed (an integer)")
    st.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field; lists are comma-separated (repeatable)",
    )
    st.add_argument("--fresh", action="store_true", help="recompute every cell instead of resuming")
    st.add_argument("--no-progress", action="store_true", help="no progress bar")
    st.add_argument("--threads", default="1", help="torch threads per cell (default 1: reproducible sums)")
    return parser


# ----------------------------------------------------------------------------------------------
# --set key=value
# ----------------------------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        return f"a comma-separated list of {_describe(args[0])}" if args else "a comma-separated list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string", type(None): "none"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse ``text`` as the annotated type ``tp`` of config field ``key`` (raise `InvalidInputError`)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        elem = args[0] if args else str
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise InvalidInputError(f"--set {key}= needs {_describe(tp)}, got an empty value")
        return tuple(parse_value(item, elem, key) for item in items)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.strip().lower() in {"none", "null"}:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse_value(text, arg, key)
            except InvalidInputError:
                continue
        raise InvalidInputError(f"--set {key}={text!r}: expected {_describe(tp)}")
    value = text.strip()
    if tp is bool:
        low = value.lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise InvalidInputError(f"--set {key}={text!r}: expected true or false")
    if tp is int:
        try:
            return int(value)
        except ValueError:
            raise InvalidInputError(f"--set {key}={text!r}: expected an integer") from None
    if tp is float:
        try:
            v = float(value)
        except ValueError:
            raise InvalidInputError(f"--set {key}={text!r}: expected a number") from None
        if not math.isfinite(v):
            raise InvalidInputError(f"--set {key}={text!r}: expected a finite number")
        return v
    if tp is str:
        return value
    raise InvalidInputError(f"--set cannot set {key!r} (type {tp}); it is not settable from the command line")


def apply_overrides(config: Any, overrides: Sequence[str]) -> Any:
    """Return ``config`` with ``key=value`` overrides applied (validated by the dataclass)."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    updates: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise InvalidInputError(f"--set expects KEY=VALUE, got {item!r}; keys are: {', '.join(names)}")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in names:
            raise InvalidInputError(f"unknown config key {key!r}; valid keys are: {', '.join(names)}")
        updates[key] = parse_value(text, hints[key], key)
    if not updates:
        return config
    try:
        return dataclasses.replace(config, **updates)
    except TypeError as exc:
        raise InvalidInputError(f"bad config value: {exc}") from None


def _check_device(device: str) -> str:
    import torch  # noqa: PLC0415

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidInputError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {device!r} asked for but CUDA is not available here; use cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InvalidInputError(f"device type {dev.type!r} is not supported; use cpu or cuda")
    return device


def _int_arg(text: str, what: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(f"{what} must be an integer, got {text!r}") from None
    if value < minimum:
        raise InvalidInputError(f"{what} must be >= {minimum}, got {value}")
    return value


# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------
def _section(title: str, lines: list[str]) -> str:
    return "\n".join([f"{title}:"] + [f"  {line}" for line in lines]) + "\n"


def _list() -> str:
    from odeflow.paths import PATHS  # noqa: PLC0415
    from studies.registry import STUDIES  # noqa: PLC0415

    parts = [_section("studies", [f"{n:<16} {s.summary}" for n, s in STUDIES.items()])]
    try:
        import solvers  # noqa: PLC0415

        lines = []
        for n in solvers.solver_names():
            try:  # the default instance: some solvers set their order per instance (dpm_solver, backends)
                obj = solvers.get_solver(n)
            except Exception:  # noqa: BLE001 - a solver that needs arguments: describe its class
                obj = solvers.SOLVERS[n]
            kind = getattr(obj, "kind", "ode")
            adaptive = getattr(obj, "adaptive", False) or (
                callable(getattr(obj, "solve_full", None)) and not getattr(obj, "fixed", False)
            )
            params = getattr(obj, "_repr_params", lambda: {})() if not isinstance(obj, type) else {}
            shown = {k: v for k, v in params.items() if k in ("order", "method", "eta")}
            extra = "".join(f", {k}={v}" for k, v in shown.items() if k != "order")
            lines.append(
                f"{n:<16} {kind}, order {getattr(obj, 'order', '?')}"
                + (f", {getattr(obj, 'nfe_per_step', '?')} NFE/step" if not adaptive else ", adaptive")
                + extra
            )
        parts.append(_section("solvers", lines))
    except ImportError as exc:  # pragma: no cover - the package is part of the distribution
        parts.append(_section("solvers", [f"(unavailable: {exc})"]))
    try:
        from solvers.grids import grid_names  # noqa: PLC0415

        parts.append(_section("grids", list(grid_names())))
    except ImportError as exc:
        parts.append(_section("grids", [f"(unavailable: {exc})"]))
    parts.append(_section("paths", [f"{n:<16} {cls.__name__}" for n, cls in PATHS.items()]))
    try:
        from models import toys  # noqa: PLC0415

        parts.append(_section("toys", list(toys.names())))
    except ImportError as exc:
        parts.append(_section("toys", [f"(unavailable: {exc})"]))
    return "\n".join(parts)


def _run(args: argparse.Namespace) -> int:
    from studies.registry import load_study  # noqa: PLC0415
    from studies.runner import check_config, run_study  # noqa: PLC0415

    mod = load_study(args.name)
    config = mod.Config.quick() if args.quick else mod.Config()
    updates: dict[str, Any] = {}
    if args.seed is not None:
        updates["seed"] = _int_arg(args.seed, "--seed", 0)
    if args.device is not None:
        updates["device"] = _check_device(args.device)
    threads = _int_arg(args.threads, "--threads", 1)
    if updates:
        config = dataclasses.replace(config, **updates)
    config = apply_overrides(config, args.overrides)
    check_config(mod, config)
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InvalidInputError(f"--out {args.out!r} exists and is not a folder")
    result = run_study(mod, config, args.out, resume=not args.fresh, progress=not args.no_progress, threads=threads)
    if result.rank != 0 or result.summary is None:
        return 0
    print((result.out / "table.md").read_text(encoding="utf-8"))
    files = sorted(p.name for p in result.out.iterdir() if p.is_file())
    print(
        f"[{result.study}] {result.computed} cell(s) computed, {result.reused} reused; "
        f"wrote {', '.join(files)} to {result.out}/"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``odeflow`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print(_list(), end="")
            return 0
        return _run(args)
    except InvalidInputError as exc:
        print(f"odeflow: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "\nodeflow: interrupted; finished cells are saved — run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
