"""service/space/_findings.py (through parse_space): every error of a file at once, in file order, without
the echoes of one mistake."""

from __future__ import annotations

import pytest

from service.space import SpaceError, parse_space
from space_cases import MANY, ONE_MISTAKE_CASES, REFUSED_PART_CASES


def _errors(text: str) -> list[tuple]:
    with pytest.raises(SpaceError) as caught:
        parse_space(text, source="space.yaml")
    return [(e.line, e.field) for e in caught.value.errors]


def test_findings_reports_every_stage_in_file_order():
    assert _errors(MANY) == [
        (3, "metric"),  # the catalog: cnn does not report it
        (4, "colour"),  # the raw data: unknown top-level key
        (5, "budget.trials"),  # the model
        (7, "params.lr.hihg"),  # the model
        (8, "params.dropuot"),  # the catalog
        (9, "params.maps.step"),  # the raw data (.nan), not again from the model
        (10, "fixed.kernel_size"),  # the catalog
    ]


def test_findings_cli_lines_are_the_errors(tmp_path):
    with pytest.raises(SpaceError) as caught:
        parse_space(MANY, source="space.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 7 and all(line.startswith("space.yaml:") for line in lines)
    assert lines[0] == str(caught.value.errors[0])


@pytest.mark.parametrize("text, expected", REFUSED_PART_CASES)
def test_findings_skip_checks_that_read_a_refused_part(text, expected):
    assert _errors(text) == expected


@pytest.mark.parametrize("text, expected", ONE_MISTAKE_CASES)
def test_findings_one_mistake_is_reported_once(text, expected):
    assert _errors(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "name: x\nbudget: {trials: 0}\nparams: [\n",  # YAML syntax
        "- name: x\n- budget: {trials: 0}\n",  # not a mapping
    ],
)
def test_findings_file_that_is_not_a_mapping_stops_at_once(text):
    assert len(_errors(text)) == 1


def test_findings_override_error_stops_at_once():
    with pytest.raises(SpaceError) as caught:
        parse_space(MANY, source="space.yaml", overrides=["budget.trials"])
    assert len(caught.value.errors) == 1 and caught.value.origin == "--set budget.trials"
