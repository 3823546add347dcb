"""service/space/_findings.py (through parse_space): every error of a file at once, in file order, without
the echoes of one mistake."""

from __future__ import annotations

import pytest

from service.space import SpaceError, parse_space
from space_cases import MANY

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


@pytest.mark.parametrize(
    "text, expected",
    [
        # a broken metric is not compared with the modes, the sampler or the scheduler
        ("metric: 5\nmode: [max, min]\nsampler: {type: nsga2}\n", [(3, "metric")]),
        # a broken budget is not compared with the scheduler's grace period
        ("metric: val_acc\nbudget: {max_epochs: 0}\nscheduler: {grace_period: 5}\n", [(4, "budget.max_epochs")]),
        # a refused parameter is not reported again as an unknown parent of a condition
        (
            "metric: val_acc\nparams:\n  optimizer: {type: categorical}\n"
            "  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}\n",
            [(5, "params.optimizer.choices")],
        ),
        # a trainable that is not text is not looked up, and nothing is checked against a stand-in
        ("trainable: 5\nmetric: f1\n", [(2, "trainable")]),
    ],
    ids=["metric", "budget", "param", "trainable"],
)
def test_findings_skip_checks_that_read_a_refused_part(text, expected):
    base = "name: s\ntrainable: mlp\n"
    if "trainable:" in text:
        base = "name: s\n"
    if "params:" not in text:
        text += "params:\n  lr: {type: float, low: 0.001, high: 0.1}\n"
    assert _errors(base + text) == expected


@pytest.mark.parametrize(
    "text, field",
    [
        ("fixed: {units: .inf}\n", "fixed.units"),  # raw data; the catalog would refuse it again
        ("params:\n  data: {type: categorical, choices: [a, b]}\n", "params.data"),  # reserved; not also "not in the catalog"
        ("params:\n  momentum: {type: float, low: 0.0, high: 0.9, when: {momentum: 0.5}}\n", "params.momentum.when.momentum"),  # not also a cycle
    ],
)
def test_findings_one_mistake_is_reported_once(text, field):
    base = "name: s\ntrainable: mlp\nmetric: val_acc\n"
    if "params:" not in text:
        text += "params:\n  lr: {type: float, low: 0.001, high: 0.1}\n"
    assert [f for _, f in _errors(base + text)] == [field]


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
