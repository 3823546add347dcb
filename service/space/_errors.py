"""The one error a space file can raise, and the helpers that make its messages useful."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any, Optional

# Marks "no offending value" (a missing key, a file that cannot be read), as distinct from a value of None.
NO_VALUE: Any = type("NoValue", (), {"__repr__": lambda self: "NO_VALUE"})()


# How many errors of one file a SpaceError carries: enough to fix a file in one go, few enough to read.
MAX_REPORTED = 10


class SpaceError(Exception):
    """A space file (or a `--set` override) is wrong; `str(e)` is one line a user can act on.

    `space.yaml:12: params.lr.low: 0.5 is not below high (0.1); make low < high`

    Attributes: `file` (the path as given, or "<string>"), `line` (1-based, None when unknown), `field`
    (dotted path such as "params.lr.low", "" for the file as a whole), `value` (the offending value, or
    NO_VALUE), `message` (what is wrong, naming the value and the rule), `hint` (what would be valid), and
    `origin` ("--set KEY=VALUE" when an override supplied the value, else None).

    When a file has several errors, `errors` holds each as its own SpaceError (in file order, at most
    MAX_REPORTED; `omitted` counts the rest), the attributes above are the first one's, and `str(e)` is one
    line per error. For a single error `errors` is `(e,)`.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str = "<string>",
        line: Optional[int] = None,
        field: str = "",
        value: Any = NO_VALUE,
        hint: str = "",
        origin: Optional[str] = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.value = value
        self.hint = hint
        self.origin = origin
        self._several: tuple[SpaceError, ...] = ()
        self.omitted = 0
        super().__init__(str(self))

    @classmethod
    def from_errors(cls, errors: Sequence["SpaceError"]) -> "SpaceError":
        """One exception for all of `errors` (already in the order to show): the error itself when there
        is one, else an error carrying the first MAX_REPORTED of them."""
        if not errors:
            raise ValueError("from_errors needs at least one SpaceError")
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(
            first.message,
            file=first.file,
            line=first.line,
            field=first.field,
            value=first.value,
            hint=first.hint,
            origin=first.origin,
        )
        combined._several = tuple(errors[:MAX_REPORTED])
        combined.omitted = max(0, len(errors) - MAX_REPORTED)
        combined.args = (str(combined),)
        return combined

    @property
    def errors(self) -> tuple["SpaceError", ...]:
        """Each error on its own: `(self,)` for a single one."""
        return self._several or (self,)

    def lines(self) -> list[str]:
        """One line per error, and a last line saying how many more there were when some are left out."""
        out = [e._line() for e in self.errors]
        if self.omitted:
            out.append(f"{self.file}: {self.omitted} more error(s) not shown; fix these first")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines()) if self._several else self._line()

    def _line(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.origin:
            where = f"{where} ({self.origin})"
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return f"{text}; {self.hint}" if self.hint else text

    def __reduce__(self):  # picklable across Ray processes despite keyword-only arguments
        return (_rebuild, (self.message, self.__dict__.copy()))


def _rebuild(message: str, state: dict) -> SpaceError:
    err = SpaceError(message)
    err.__dict__.update(state)
    return err


class Issue(ValueError):
    """Raised inside validators; turned into a SpaceError once the file and line are known.

    `at` is a path relative to where the validator runs (a ParamSpec validator raises at=("low",) for
    `params.lr.low`); `value` the offending value.
    """

    def __init__(self, message: str, hint: str = "", *, at: tuple = (), value: Any = NO_VALUE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.at = tuple(at)
        self.value = value


def show(value: Any) -> str:
    """A value as the user would write it in YAML: 'adam', 0.1, true, null, [32, 64]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def num(x: float) -> str:
    """A bound for a message: 3 rather than 3.0, 0.0001 rather than 1e-04."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x) if isinstance(x, float) else str(x)


def closest(word: Any, candidates: Iterable[str]) -> Optional[str]:
    """The candidate a typo most likely meant, or None."""
    candidates = list(candidates)
    if not isinstance(word, str):
        return None
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered:
        return lowered[word.lower()]
    simplified = {c.replace("_", "").replace("-", ""): c for c in lowered}
    key = word.lower().replace("_", "").replace("-", "")
    if key in simplified:
        return lowered[simplified[key]]
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def did_you_mean(word: Any, candidates: Iterable[str], what: str = "valid") -> str:
    """A hint: "did you mean 'trials'?" or, without a close match, the whole list."""
    candidates = list(candidates)
    guess = closest(word, candidates)
    listing = ", ".join(candidates)
    if guess is not None:
        return f"did you mean {guess!r}? ({what}: {listing})"
    return f"{what}: {listing}"
