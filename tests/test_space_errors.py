"""service/space/_errors.py: SpaceError for one error and for several, and the message helpers."""

from __future__ import annotations

import pickle

import pytest

from service.space import MAX_REPORTED, SpaceError


def _error(line: int, field: str = "budget.trials") -> SpaceError:
    return SpaceError("0 is not >= 1", file="space.yaml", line=line, field=field, value=0, hint="trials must be >= 1")


def test_space_error_single_is_one_line_and_its_own_errors():
    error = _error(3)
    assert str(error) == "space.yaml:3: budget.trials: 0 is not >= 1; trials must be >= 1"
    assert error.errors == (error,) and error.lines() == [str(error)] and error.omitted == 0


def test_space_error_from_one_error_is_that_error():
    error = _error(3)
    assert SpaceError.from_errors([error]) is error


def test_space_error_from_several_keeps_each_and_the_first_as_its_attributes():
    errors = [_error(3), _error(7, "params.lr.low")]
    combined = SpaceError.from_errors(errors)
    assert combined.errors == tuple(errors)
    assert (combined.line, combined.field, combined.message) == (3, "budget.trials", "0 is not >= 1")
    assert str(combined) == f"{errors[0]}\n{errors[1]}" == "\n".join(combined.lines())
    assert combined.args == (str(combined),)


@pytest.mark.parametrize("count, shown, omitted", [(MAX_REPORTED, MAX_REPORTED, 0), (MAX_REPORTED + 3, MAX_REPORTED, 3)])
def test_space_error_from_many_shows_at_most_max_reported(count, shown, omitted):
    combined = SpaceError.from_errors([_error(line) for line in range(1, count + 1)])
    assert len(combined.errors) == shown and combined.omitted == omitted
    lines = combined.lines()
    assert len(lines) == shown + (1 if omitted else 0)
    if omitted:
        assert lines[-1] == f"space.yaml: {omitted} more error(s) not shown; fix these first"


def test_space_error_from_no_errors_is_a_programming_error():
    with pytest.raises(ValueError):
        SpaceError.from_errors([])


def test_space_error_with_several_survives_pickling():
    combined = SpaceError.from_errors([_error(3), _error(7)])
    copy = pickle.loads(pickle.dumps(combined))
    assert str(copy) == str(combined) and [e.line for e in copy.errors] == [3, 7]
