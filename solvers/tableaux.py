r"""Butcher tableaux of explicit Runge–Kutta methods, as validated data.

An $s$-stage explicit Runge–Kutta method advances $x' = f(t, x)$ by $h = t_1 - t_0$ as

$$k_i = f\Big(t_0 + c_i h,\; x_0 + h\sum_{j<i} a_{ij} k_j\Big),\qquad
x_1 = x_0 + h \sum_i b_i k_i,$$

and an embedded pair adds an error estimate $\hat e = h \sum_i e_i k_i$ with
$e = b - \hat b$ (the difference of the two weight vectors). A tableau is *FSAL* (first same
as last) when its last stage is evaluated at $(t_1, x_1)$ — the last row of $A$ equals $b$,
$b_s = 0$, $c_s = 1$ — so that the next step reuses it as its first stage.

`ButcherTableau` checks at construction that the method is explicit and consistent:
rows of $A$ sum to $c$, $\sum_i b_i = 1$, error weights sum to 0, FSAL tableaux really are
FSAL, and a dense-output interpolant $b_i(\theta)$ matches $b_i$ at $\theta = 1$ and is
consistent ($\sum_i b_i(\theta) = \theta$). A violated condition raises `InvalidInputError`.

References: Butcher, *Numerical Methods for ODEs* (2016); Hairer, Nørsett & Wanner,
*Solving ODEs I* (1993) — Kutta, RK4, 3/8 rule, Dormand–Prince 5(4) with Shampine's (1986)
dense output, DOP853; Bogacki & Shampine (1989) 3(2); Shu & Osher (1988) SSPRK3;
Ralston (1962); Tsitouras (2011) 5(4) with its interpolant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from odeflow._checks import check_choice
from odeflow.errors import InvalidInputError

__all__ = ["ButcherTableau", "ExtraStageInterpolant", "DOP853_INTERPOLANT", "TABLEAUX", "get_tableau", "tableau_names"]

_TOL = 1e-12


def _floats(values: Sequence[float], what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a sequence of numbers") from None
    if not all(math.isfinite(v) for v in out):
        raise InvalidInputError(f"{what} contains non-finite values")
    return out


@dataclass(frozen=True)
class ButcherTableau:
    r"""An explicit Runge–Kutta method as data.

    Attributes
    ----------
    name: a short label.
    c: nodes $c_i$, $c_1 = 0$.
    a: strictly lower-triangular rows: ``a[i]`` holds $a_{i,0..i-1}$ (``a[0] == ()``).
    b: weights $b_i$ of the propagated solution.
    order: order $p$ of the propagated solution.
    b_err: error weights $e = b - \hat b$ of an embedded pair (sum 0), or ``None``.
    embedded_order: order $\hat p$ of the embedded solution $\hat b$.
    b_err2: a second error-weight vector (DOP853's 3rd-order estimator), combined as
        $\|e_5\|^2/\sqrt{\|e_5\|^2 + 0.01\|e_3\|^2}$ (Hairer's DOP853), or ``None``.
    fsal: the last stage is $f(t_1, x_1)$ and is reused as the next step's first stage.
    dense: interpolant coefficients: ``dense[i][m]`` is the coefficient of $\theta^{m+1}$ in
        $b_i(\theta)$, with $x(t_0 + \theta h) \approx x_0 + h\sum_i b_i(\theta) k_i$;
        ``None`` if the method has no own interpolant (cubic Hermite is used then).
    dense_order: the order of that interpolant.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None
    embedded_order: int | None = None
    b_err2: tuple[float, ...] | None = None
    fsal: bool = False
    dense: tuple[tuple[float, ...], ...] | None = None
    dense_order: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "c", _floats(self.c, f"{self.name}: c"))
        set_(self, "b", _floats(self.b, f"{self.name}: b"))
        try:
            rows = tuple(_floats(row, f"{self.name}: row {i} of a") for i, row in enumerate(self.a))
        except TypeError:
            raise InvalidInputError(f"{self.name}: a must be a sequence of rows") from None
        set_(self, "a", rows)
        if self.b_err is not None:
            set_(self, "b_err", _floats(self.b_err, f"{self.name}: b_err"))
        if self.b_err2 is not None:
            set_(self, "b_err2", _floats(self.b_err2, f"{self.name}: b_err2"))
        if self.dense is not None:
            set_(self, "dense", tuple(_floats(r, f"{self.name}: dense row {i}") for i, r in enumerate(self.dense)))
        self._validate()

    # --- validation ------------------------------------------------------------------------
    def _fail(self, msg: str) -> None:
        raise InvalidInputError(f"Butcher tableau {self.name!r}: {msg}")

    def _validate(self) -> None:
        s = len(self.c)
        if s < 1:
            self._fail("needs at least one stage")
        if len(self.a) != s or len(self.b) != s:
            self._fail(f"c has {s} entries but a has {len(self.a)} rows and b {len(self.b)} entries")
        for i, row in enumerate(self.a):
            if len(row) != i:
                self._fail(f"row {i} of a has {len(row)} entries; an explicit method needs exactly {i}")
        if self.c[0] != 0.0:
            self._fail(f"c[0] = {self.c[0]} but an explicit method starts at c[0] = 0")
        if not isinstance(self.order, int) or self.order < 1:
            self._fail(f"order must be a positive integer, got {self.order!r}")
        scale = max(1.0, max(abs(v) for row in self.a for v in row) if s > 1 else 1.0)
        for i, row in enumerate(self.a):
            if abs(math.fsum(row) - self.c[i]) > _TOL * scale:
                self._fail(f"row {i} of a sums to {math.fsum(row)!r}, not c[{i}] = {self.c[i]!r}")
        if abs(math.fsum(self.b) - 1.0) > _TOL * max(1.0, max(map(abs, self.b))):
            self._fail(f"weights b sum to {math.fsum(self.b)!r}, not 1")
        for label, err in (("b_err", self.b_err), ("b_err2", self.b_err2)):
            if err is None:
                continue
            if len(err) != s:
                self._fail(f"{label} has {len(err)} entries, expected {s}")
            if abs(math.fsum(err)) > _TOL * max(1.0, max(map(abs, err))):
                self._fail(f"error weights {label} sum to {math.fsum(err)!r}, not 0")
        if (self.b_err is None) != (self.embedded_order is None):
            self._fail("b_err and embedded_order go together (both given for an embedded pair, or neither)")
        if self.b_err2 is not None and self.b_err is None:
            self._fail("b_err2 needs b_err")
        if self.fsal:
            if s < 2 or self.c[-1] != 1.0 or self.b[-1] != 0.0:
                self._fail("an FSAL tableau needs c[-1] = 1 and b[-1] = 0")
            if any(abs(x - y) > _TOL for x, y in zip(self.a[-1], self.b[:-1], strict=True)):
                self._fail("an FSAL tableau needs its last row of a equal to b")
        if self.dense is not None:
            if len(self.dense) != s:
                self._fail(f"dense has {len(self.dense)} rows, expected one per stage ({s})")
            if self.dense_order is None:
                self._fail("dense needs dense_order")
            for i, poly in enumerate(self.dense):
                if abs(math.fsum(poly) - self.b[i]) > 1e-10 * max(1.0, max(map(abs, poly))):
                    self._fail(f"dense row {i} gives b_{i}(1) = {math.fsum(poly)!r}, not b[{i}] = {self.b[i]!r}")
            degree = max(len(p) for p in self.dense)
            for m in range(degree):
                total = math.fsum(p[m] if m < len(p) else 0.0 for p in self.dense)
                want = 1.0 if m == 0 else 0.0
                if abs(total - want) > 1e-10 * max(1.0, max(abs(p[m]) for p in self.dense if m < len(p))):
                    self._fail(f"dense output is inconsistent: sum of theta^{m + 1} coefficients is {total!r}")

    # --- derived properties ----------------------------------------------------------------
    @property
    def stages(self) -> int:
        """Number of stages $s$ (field evaluations per step without FSAL reuse)."""
        return len(self.c)

    @property
    def nfe_per_step(self) -> int:
        """Field evaluations per step in steady state (one fewer for FSAL tableaux)."""
        return self.stages - 1 if self.fsal else self.stages

    @property
    def embedded(self) -> bool:
        """Whether the tableau carries an error estimate."""
        return self.b_err is not None


# ---------------------------------------------------------------------------------------------
# Fixed-step methods
# ---------------------------------------------------------------------------------------------
EULER = ButcherTableau("euler", c=(0.0,), a=((),), b=(1.0,), order=1)

MIDPOINT = ButcherTableau("midpoint", c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2)

HEUN = ButcherTableau("heun", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)

RALSTON = ButcherTableau("ralston", c=(0.0, 2 / 3), a=((), (2 / 3,)), b=(0.25, 0.75), order=2)

RK3 = ButcherTableau(
    "rk3",
    c=(0.0, 0.5, 1.0),
    a=((), (0.5,), (-1.0, 2.0)),
    b=(1 / 6, 2 / 3, 1 / 6),
    order=3,
)

SSPRK3 = ButcherTableau(
    "ssprk3",
    c=(0.0, 1.0, 0.5),
    a=((), (1.0,), (0.25, 0.25)),
    b=(1 / 6, 1 / 6, 2 / 3),
    order=3,
)

RK4 = ButcherTableau(
    "rk4",
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)

RK38 = ButcherTableau(
    "rk38",
    c=(0.0, 1 / 3, 2 / 3, 1.0),
    a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
    b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
    order=4,
)

# ---------------------------------------------------------------------------------------------
# Embedded pairs
# ---------------------------------------------------------------------------------------------
HEUN_EULER = ButcherTableau(
    "heun_euler",
    c=(0.0, 1.0),
    a=((), (1.0,)),
    b=(0.5, 0.5),
    order=2,
    b_err=(0.5 - 1.0, 0.5 - 0.0),
    embedded_order=1,
)

BOSH3 = ButcherTableau(
    "bosh3",
    c=(0.0, 0.5, 0.75, 1.0),
    a=((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    order=3,
    b_err=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
    embedded_order=2,
    fsal=True,
)

_DP5_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP5_BHAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5 = ButcherTableau(
    "dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DP5_B[:6],
    ),
    b=_DP5_B,
    order=5,
    b_err=tuple(x - y for x, y in zip(_DP5_B, _DP5_BHAT, strict=True)),
    embedded_order=4,
    fsal=True,
    # Shampine's (1986) 4th-order continuous extension (Hairer–Nørsett–Wanner I, §II.6):
    # coefficients of theta, theta^2, theta^3, theta^4 in b_i(theta).
    dense=(
        (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
        (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
        (0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632),
        (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
        (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
    ),
    dense_order=4,
)


def _expand(scale: float, roots: Sequence[float], quadratic: Sequence[float] | None, power: int) -> tuple[float, ...]:
    """Coefficients of theta^1..theta^4 of ``scale * theta^power * prod(theta - r) * (theta^2 + p theta + q)``."""
    poly = [0.0] * power + [scale]  # ascending powers
    factors: list[list[float]] = [[-r, 1.0] for r in roots]
    if quadratic is not None:
        factors.append([quadratic[1], quadratic[0], 1.0])
    for f in factors:
        out = [0.0] * (len(poly) + len(f) - 1)
        for i, p in enumerate(poly):
            for j, q in enumerate(f):
                out[i + j] += p * q
        poly = out
    poly = poly + [0.0] * (5 - len(poly))
    return tuple(poly[1:5])


_TS5_B = (
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
    0.0,
)
_TS5_BHAT = (
    0.09468075576583946,
    0.009183565540343253,
    0.4877705284247616,
    1.234297566930479,
    -2.7077123499835255,
    1.866628418170587,
    1 / 66,
)
TSIT5 = ButcherTableau(
    "tsit5",
    c=(0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
    a=(
        (),
        (0.161,),
        (-0.008480655492356989, 0.335480655492357),
        (2.8971530571054935, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383),
        _TS5_B[:6],
    ),
    b=_TS5_B,
    order=5,
    b_err=tuple(x - y for x, y in zip(_TS5_B, _TS5_BHAT, strict=True)),
    embedded_order=4,
    fsal=True,
    # Tsitouras's (2011) 4th-order free interpolant, b_i(theta) in factored form.
    dense=(
        _expand(-1.0530884977290216, (0.0, 1.3299890189751412), (-1.4364028541716351, 0.7139816917074209), 0),
        _expand(0.1017, (), (-2.1966568338249754, 1.2949852507374631), 2),
        _expand(2.490627285651252793, (), (-2.38535645472061657, 1.57803468208092486), 2),
        _expand(-16.54810288924490272, (1.21712927295533244, 0.61620406037800089), None, 2),
        _expand(47.37952196281928122, (1.203071208372362603, 0.658047292653547382), None, 2),
        _expand(-34.87065786149660974, (1.2, 2 / 3), None, 2),
        _expand(2.5, (1.0, 0.6), None, 2),
    ),
    dense_order=4,
)

# Dormand & Prince's DOP853 (Hairer–Nørsett–Wanner I, §II.10): 12 stages; the 13th row is the
# FSAL evaluation f(t1, x1). Error estimate: the 5th-order weights E5 combined with the
# 3rd-order weights E3 as in Hairer's code.
_DOP853_C = (
    0.0,
    0.05260015195876773,
    0.0789002279381516,
    0.1183503419072274,
    0.2816496580927726,
    1 / 3,
    0.25,
    4 / 13,
    127 / 195,
    0.6,
    6 / 7,
    1.0,
    1.0,
)
_DOP853_A = (
    (),
    (0.05260015195876773,),
    (0.0197250569845379, 0.0591751709536137),
    (0.02958758547680685, 0.0, 0.08876275643042054),
    (0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792),
    (0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242),
    (0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125),
    (
        0.03709200011850479,
        0.0,
        0.0,
        0.17038392571223998,
        0.10726203044637328,
        -0.015319437748624402,
        0.008273789163814023,
    ),
    (
        0.6241109587160757,
        0.0,
        0.0,
        -3.3608926294469414,
        -0.868219346841726,
        27.59209969944671,
        20.154067550477894,
        -43.48988418106996,
    ),
    (
        0.47766253643826434,
        0.0,
        0.0,
        -2.4881146199716677,
        -0.590290826836843,
        21.230051448181193,
        15.279233632882423,
        -33.28821096898486,
        -0.020331201708508627,
    ),
    (
        -0.9371424300859873,
        0.0,
        0.0,
        5.186372428844064,
        1.0914373489967295,
        -8.149787010746927,
        -18.52006565999696,
        22.739487099350505,
        2.4936055526796523,
        -3.0467644718982196,
    ),
    (
        2.273310147516538,
        0.0,
        0.0,
        -10.53449546673725,
        -2.0008720582248625,
        -17.9589318631188,
        27.94888452941996,
        -2.8589982771350235,
        -8.87285693353063,
        12.360567175794303,
        0.6433927460157636,
    ),
)
_DOP853_B = (
    0.054293734116568765,
    0.0,
    0.0,
    0.0,
    0.0,
    4.450312892752409,
    1.8915178993145003,
    -5.801203960010585,
    0.3111643669578199,
    -0.1521609496625161,
    0.20136540080403034,
    0.04471061572777259,
)
_DOP853_E5 = (
    0.01312004499419488,
    0.0,
    0.0,
    0.0,
    0.0,
    -1.2251564463762044,
    -0.4957589496572502,
    1.6643771824549864,
    -0.35032884874997366,
    0.3341791187130175,
    0.08192320648511571,
    -0.022355307863886294,
    0.0,
)
# E3 = b - b_hat3 with b_hat3 nonzero at stages 0, 8, 11.
_DOP853_E3 = tuple(
    b - h
    for b, h in zip(
        _DOP853_B + (0.0,),
        (0.244094488188976377952755905512,) + (0.0,) * 7 + (0.733846688281611857341361741547, 0.0, 0.0)
        + (0.220588235294117647058823529412e-1, 0.0),
        strict=True,
    )
)
DOP853 = ButcherTableau(
    "dop853",
    c=_DOP853_C,
    a=_DOP853_A + (_DOP853_B,),
    b=_DOP853_B + (0.0,),
    order=8,
    b_err=_DOP853_E5,
    embedded_order=5,
    b_err2=_DOP853_E3,
    fsal=True,
)


@dataclass(frozen=True)
class ExtraStageInterpolant:
    r"""A dense output that needs extra stages: DOP853's 7th-order interpolant (HNW I, §II.10).

    After an accepted step with stages $k_1..k_{13}$ ($k_{13} = f(t_1, x_1)$), three more stages
    $k_{14..16}$ at nodes ``c`` (rows ``a`` over all previous stages) give, with
    $\Delta = x_1 - x_0$, $F_0 = \Delta$, $F_1 = h k_1 - \Delta$, $F_2 = 2\Delta - h(k_{13} + k_1)$,
    $F_{3..6} = h\,D k$:
    $x(t_0 + 	heta h) = x_0 + 	heta(F_0 + (1-	heta)(F_1 + 	heta(F_2 + (1-	heta)(F_3 + 	heta(F_4 +
    (1-	heta)(F_5 + 	heta F_6))))))$.
    """

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    d: tuple[tuple[float, ...], ...]
    order: int

    def __post_init__(self) -> None:
        for i, (ci, row) in enumerate(zip(self.c, self.a, strict=True)):
            if abs(math.fsum(row) - ci) > _TOL * max(1.0, max(map(abs, row))):
                raise InvalidInputError(f"extra stage {i}: row sums to {math.fsum(row)!r}, not c = {ci!r}")


DOP853_INTERPOLANT = ExtraStageInterpolant(
    c=(0.1, 0.2, 7 / 9),
    a=(
        (
            0.056167502283047954, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25350021021662483, -0.2462390374708025,
            -0.12419142326381637, 0.15329179827876568, 0.00820105229563469, 0.007567897660545699, -0.008298,
        ),
        (
            0.03183464816350214, 0.0, 0.0, 0.0, 0.0, 0.028300909672366776, 0.053541988307438566,
            -0.05492374857139099, 0.0, 0.0, -0.00010834732869724932, 0.0003825710908356584,
            -0.00034046500868740456, 0.1413124436746325,
        ),
        (
            -0.42889630158379194, 0.0, 0.0, 0.0, 0.0, -4.697621415361164, 7.683421196062599, 4.06898981839711,
            0.3567271874552811, 0.0, 0.0, 0.0, -0.0013990241651590145, 2.9475147891527724, -9.15095847217987,
        ),
    ),
    d=(
        (
            -8.428938276109013, 0.0, 0.0, 0.0, 0.0, 0.5667149535193777, -3.0689499459498917, 2.38466765651207,
            2.117034582445028, -0.871391583777973, 2.2404374302607883, 0.6315787787694688, -0.08899033645133331,
            18.148505520854727, -9.194632392478356, -4.436036387594894,
        ),
        (
            10.427508642579134, 0.0, 0.0, 0.0, 0.0, 242.28349177525817, 165.20045171727028, -374.5467547226902,
            -22.113666853125306, 7.733432668472264, -30.674084731089398, -9.332130526430229, 15.697238121770845,
            -31.139403219565178, -9.35292435884448, 35.81684148639408,
        ),
        (
            19.985053242002433, 0.0, 0.0, 0.0, 0.0, -387.0373087493518, -189.17813819516758, 527.8081592054236,
            -11.57390253995963, 6.8812326946963, -1.0006050966910838, 0.7777137798053443, -2.778205752353508,
            -60.19669523126412, 84.32040550667716, 11.99229113618279,
        ),
        (
            -25.69393346270375, 0.0, 0.0, 0.0, 0.0, -154.18974869023643, -231.5293791760455, 357.6391179106141,
            93.40532418362432, -37.45832313645163, 104.0996495089623, 29.8402934266605, -43.53345659001114,
            96.32455395918828, -39.17726167561544, -149.72683625798564,
        ),
    ),
    order=7,
)  # fmt: skip

TABLEAUX: dict[str, ButcherTableau] = {
    t.name: t
    for t in (EULER, MIDPOINT, HEUN, RALSTON, RK3, SSPRK3, RK4, RK38, HEUN_EULER, BOSH3, DOPRI5, TSIT5, DOP853)
}


def tableau_names() -> list[str]:
    """Names of the built-in tableaux."""
    return list(TABLEAUX)


def get_tableau(name: str) -> ButcherTableau:
    """A built-in tableau by name (``"rk4"``, ``"dopri5"``, …)."""
    check_choice(name, TABLEAUX, "tableau")
    return TABLEAUX[name]
