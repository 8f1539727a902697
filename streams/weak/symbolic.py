"""Votes as linear forms in the propensity, so that a search can be tabulated before theta is known.

Incremental aggregation (``streams.weak.incremental``) folds each search into stored per-query sums
once, but the examination propensity that weights its votes is fitted on *all* clicks of the
window, which change with every run. The labeling functions use theta in exactly two ways, each a
positive factor of one rank: ``propensity.weight(rank)`` (the IPS factor of a click) and
``propensity.examination(rank)`` (how sure a non-click at that rank is a rejection). Running the
functions against :class:`SymbolicPropensity` turns every vote weight into a :class:`Linear` form
``c_1 * 1 + sum_r a_r * ips_r + sum_r b_r * exam_r``; sums of such forms over searches are the
sufficient statistics, evaluated once theta is fitted (:func:`evaluate`).

Where the tabulation compares or clips a form whose sign depends on theta (``max(click + skip, 0)``
of a product both chosen and passed over in one search, the ``min`` of two theta-scaled votes
against one product), the comparison raises :class:`Undetermined`: that search is not linear in
theta and is kept whole, to be tabulated with the fitted theta at the end (exact, and rare).
"""

from collections.abc import Mapping
from typing import Any, Union

from streams.weak.propensity import Propensity

ONE = "1"  # the constant basis element
Number = Union[float, "Linear"]


class Undetermined(ArithmeticError):
    """A comparison of a linear form whose sign depends on the (not yet known) propensity."""


def ips_basis(rank: int) -> str:
    return f"ips:{rank}"


def exam_basis(rank: int) -> str:
    return f"exam:{rank}"


class Linear:
    """``sum(coef * basis)`` over positive basis values (1, IPS factors, examination probabilities)."""

    __slots__ = ("terms",)

    def __init__(self, terms: Mapping[str, float]) -> None:
        self.terms = dict(terms)

    def _plus(self, other: Any, sign: float = 1.0) -> "Linear":
        out = dict(self.terms)
        if isinstance(other, Linear):
            for k, v in other.terms.items():
                out[k] = out.get(k, 0.0) + sign * v
        elif isinstance(other, int | float):
            out[ONE] = out.get(ONE, 0.0) + sign * float(other)
        else:
            return NotImplemented
        return Linear(out)

    def __add__(self, other: Any) -> "Linear":
        return self._plus(other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> "Linear":
        return self._plus(other, -1.0)

    def __rsub__(self, other: Any) -> "Linear":
        return (-self)._plus(other)

    def __neg__(self) -> "Linear":
        return Linear({k: -v for k, v in self.terms.items()})

    def __mul__(self, other: Any) -> "Linear":
        if isinstance(other, int | float):
            return Linear({k: v * other for k, v in self.terms.items()})
        raise Undetermined("a product of two propensity-dependent factors is not linear")

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Number:
        if isinstance(other, int | float):
            return Linear({k: v / other for k, v in self.terms.items()})
        if isinstance(other, Linear) and len(other.terms) == 1 and self.terms.keys() == other.terms.keys():
            (k, v), = other.terms.items()
            return self.terms[k] / v  # (w * ips_r) / ips_r: a vote's strength, a plain number
        raise Undetermined("a ratio of propensity-dependent forms is not linear")

    def sign(self) -> int:
        """-1, 0 or +1 whatever the (positive) basis values are; :class:`Undetermined` otherwise."""
        signs = {1 if v > 0 else -1 for v in self.terms.values() if v != 0}
        if len(signs) > 1:
            raise Undetermined("the sign of this vote depends on the propensity")
        return signs.pop() if signs else 0

    def _cmp(self, other: Any) -> int:
        if not isinstance(other, Linear | int | float):
            return NotImplemented
        return (self - other).sign()

    def __lt__(self, other: Any) -> bool:
        return self._cmp(other) < 0

    def __le__(self, other: Any) -> bool:
        return self._cmp(other) <= 0

    def __gt__(self, other: Any) -> bool:
        return self._cmp(other) > 0

    def __ge__(self, other: Any) -> bool:
        return self._cmp(other) >= 0

    def __repr__(self) -> str:
        return f"Linear({self.terms!r})"


class SymbolicPropensity:
    """Stands in for :class:`~streams.weak.propensity.Propensity` while folding: each factor is a basis
    element of its rank (the fitted propensity's clipping and rank clamping apply at evaluation)."""

    def weight(self, rank: int) -> Linear:
        return Linear({ips_basis(rank): 1.0})

    def examination(self, rank: int) -> Linear:
        return Linear({exam_basis(rank): 1.0})


def terms_of(value: Number) -> dict[str, float]:
    """A tabulated value as basis -> coefficient (a plain number is all constant)."""
    return dict(value.terms) if isinstance(value, Linear) else {ONE: float(value)}


def basis_value(basis: str, propensity: Propensity | None) -> float:
    """The value of one basis element under the fitted ``propensity`` (``None``: no debiasing)."""
    if basis == ONE:
        return 1.0
    kind, rank = basis.split(":")
    if propensity is None:
        return 1.0
    return propensity.weight(int(rank)) if kind == "ips" else propensity.examination(int(rank))


def evaluate(terms: Mapping[str, float], propensity: Propensity | None) -> float:
    """``sum(coef * basis value)``: a stored sufficient statistic under the fitted propensity."""
    return sum(c * basis_value(b, propensity) for b, c in terms.items())
