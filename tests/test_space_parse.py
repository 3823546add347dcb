"""Reading a space: files, YAML, limits, `--set` overrides, defaults, durations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.space import SpaceError, load_space, parse_duration, parse_space
from space_cases import EXAMPLE, MINIMAL

def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the example and the defaults --------------------------------------------------------------------------
def test_load_space_reads_the_contract_example(tmp_path):
    space = load_space(_write(tmp_path, EXAMPLE))
    assert space.name == "digits-cnn" and space.trainable == "cnn"
    assert space.metrics == ["val_acc"] and space.modes == ["max"] and not space.is_multi_objective
    assert space.budget.trials == 40 and space.budget.time_s == 1800.0 and space.budget.time_text == "30m"
    assert space.budget.max_failed_trials == 5
    assert space.params["lr"].log and space.params["lr"].low == 1e-4
    assert space.params["maps"].step == 8 and isinstance(space.params["maps"].low, int)
    assert space.params["momentum"].when == {"optimizer": ("sgd",)}
    assert space.trainable_spec is not None and space.trainable_spec.name == "cnn"
    assert space.source == str((tmp_path / "space.yaml").resolve())
    assert space.text == EXAMPLE


def test_parse_space_fills_documented_defaults():
    space = parse_space(MINIMAL)
    assert space.data.model_dump() == {
        "dataset": "digits",
        "val_fraction": 0.2,
        "seed": 0,
        "root": None,
        "path": None,
        "target": None,
        "categorical": "onehot",
    }
    assert space.mode == "max"
    budget = space.budget
    assert (budget.trials, budget.max_epochs, budget.concurrency) == (20, 10, 2)
    assert budget.time_s is None and budget.time_text is None and budget.max_failed_trials is None
    assert (space.resources.cpu, space.resources.gpu) == (1.0, 0.0)
    assert (space.sampler.type, space.sampler.seed, space.sampler.options) == ("tpe", None, {})
    scheduler = space.scheduler
    assert (scheduler.type, scheduler.grace_period, scheduler.reduction_factor) == ("asha", 1, 3)
    assert scheduler.min_samples_required == 3
    assert space.fixed == {} and space.description is None and space.source == "<string>"


def test_search_space_is_frozen():
    space = parse_space(MINIMAL)
    with pytest.raises(Exception):
        space.name = "other"
    with pytest.raises(Exception):
        space.budget.trials = 3


def test_trial_constants_hold_fixed_data_and_max_epochs():
    space = parse_space(EXAMPLE)
    constants = space.trial_constants()
    assert constants["kernel_size"] == 3 and constants["max_epochs"] == 15
    assert constants["data"]["dataset"] == "digits" and constants["data"]["val_fraction"] == 0.2
    constants["data"]["dataset"] = "changed"  # a copy: trials cannot change the space
    assert space.data.dataset == "digits"


def test_to_dict_round_trips_through_yaml():
    space = parse_space(EXAMPLE.replace("sampler: {type: tpe, seed: 0}", "sampler: {type: tpe, seed: 0, n_startup_trials: 5}"))
    dumped = yaml.safe_dump(space.to_dict(), sort_keys=False)
    again = parse_space(dumped)
    assert again.to_dict() == space.to_dict()
    assert again.params == space.params and again.sampler == space.sampler and again.budget == space.budget


def test_numeric_strings_are_numbers():
    # PyYAML reads 1e-4 (no dot) as a string; the space format accepts it where a number is expected.
    space = parse_space(MINIMAL.replace("1.0e-3", "1e-3").replace("high: 0.1", 'high: "0.1"'))
    assert space.params["lr"].low == 1e-3 and space.params["lr"].high == 0.1


def test_metric_list_and_modes():
    text = MINIMAL.replace("metric: val_acc", "metric: [val_acc, n_params]\nmode: [max, min]")
    text += "sampler: {type: nsga2}\n"
    space = parse_space(text)
    assert space.metrics == ["val_acc", "n_params"] and space.modes == ["max", "min"] and space.is_multi_objective


def test_empty_sections_mean_defaults():
    space = parse_space(MINIMAL + "budget:\nfixed:\nsampler:\n")
    assert space.budget.trials == 20 and space.fixed == {} and space.sampler.type == "tpe"


def test_budget_none_words_mean_no_limit():
    space = parse_space(MINIMAL + "budget: {time: none, max_failed_trials: none}\n")
    assert space.budget.time_s is None and space.budget.max_failed_trials is None


# -- files ----------------------------------------------------------------------------------------------
def test_load_space_missing_file(tmp_path):
    with pytest.raises(SpaceError, match=r"nope.yaml: no such file; check the path"):
        load_space(tmp_path / "nope.yaml")


def test_load_space_directory(tmp_path):
    _write(tmp_path, MINIMAL, "a.yaml")
    with pytest.raises(SpaceError, match=r"is a directory, not a space file; name a file in it, e.g. .*a.yaml"):
        load_space(tmp_path)


def test_load_space_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpaceError, match="is not UTF-8 text"):
        load_space(path)


def test_load_space_too_large(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (1024 * 1024) + "\n" + MINIMAL)
    with pytest.raises(SpaceError, match="larger than 1024 KiB"):
        load_space(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_load_space_unreadable(tmp_path):
    path = _write(tmp_path, MINIMAL)
    path.chmod(0)
    with pytest.raises(SpaceError, match="cannot be read"):
        load_space(path)


def test_load_space_resolves_data_paths_from_the_space_folder(tmp_path, monkeypatch):
    folder = tmp_path / "spaces"
    folder.mkdir()
    text = MINIMAL + "data: {dataset: csv, path: data/table.csv, target: y}\n"
    monkeypatch.chdir(tmp_path)
    space = parse_space(text, base_dir=folder, check_data=False)
    assert space.data.path == str(folder / "data" / "table.csv")
    # a path given with --set is relative to where the command runs, like any shell argument
    space = parse_space(text, base_dir=folder, overrides=["data.path=other.csv"], check_data=False)
    assert space.data.path == str(tmp_path / "other.csv")


# -- YAML -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, line, shows",
    [
        ("name: x\nparams: {lr: {type: float\n", 3, "YAML syntax error"),
        ("name: x\n\tmetric: val_acc\n", 2, "YAML syntax error"),
        ("name: x\nname: y\n", 2, "duplicate key 'name' (first written at line 1)"),
        ("name: x\n---\nname: y\n", 2, "more than one YAML document"),
        ("- name: x\n", 1, "holds a list at the top level"),
        ("name: !!python/object:os.system x\n", 1, "cannot read"),
        ("a: &x [*x]\n", 1, "alias that contains itself"),
    ],
)
def test_parse_space_yaml_problems(text, line, shows):
    with pytest.raises(SpaceError) as caught:
        parse_space(text, source="space.yaml")
    assert caught.value.line == line, str(caught.value)
    assert shows in str(caught.value)
    assert str(caught.value).startswith(f"space.yaml:{line}: ")


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_parse_space_empty(text):
    with pytest.raises(SpaceError, match=r"space.yaml: is empty; a space needs at least name, trainable, metric and params"):
        parse_space(text, source="space.yaml")


def test_parse_space_rejects_billion_laughs_after_a_bounded_amount_of_work(monkeypatch):
    # Ten levels of ten aliases each expand to 10**10 strings; the reader must give up at its node limit, so
    # it builds at most that many scalars (counted at PyYAML's constructor, whatever the machine's speed).
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        levels.append(f"a{i}: &a{i} [{refs}]")
    built = []
    construct = yaml.constructor.SafeConstructor.construct_object
    monkeypatch.setattr(yaml.constructor.SafeConstructor, "construct_object",
                        lambda self, node, *a, **k: built.append(node) or construct(self, node, *a, **k))
    with pytest.raises(SpaceError, match="more than 20000 YAML nodes"):
        parse_space("\n".join(levels) + "\n", source="bomb.yaml")
    assert 0 < len(built) <= 20_000


def test_parse_space_merge_keys_and_anchors():
    text = MINIMAL + "x_defaults: &d {low: 1, high: 4}\n"
    with pytest.raises(SpaceError, match="unknown key 'x_defaults'"):
        parse_space(text)
    text = MINIMAL.replace("params:\n", "params:\n  hidden_layers: {<<: &d {low: 1, high: 4}, type: int}\n  units: {<<: *d, type: int, high: 8}\n")
    space = parse_space(text)
    assert (space.params["hidden_layers"].low, space.params["hidden_layers"].high) == (1, 4)
    assert space.params["units"].high == 8


# -- --set overrides ------------------------------------------------------------------------------------
def test_overrides_apply_before_validation(tmp_path):
    path = _write(tmp_path, EXAMPLE)
    space = load_space(
        path,
        overrides=[
            "budget.trials=5",
            "params.lr.high=0.1",
            "sampler={type: random}",
            "resources.gpu=0.5",
            "description=from the command line",
            "fixed.dense_units=32",
            "budget.time=none",
        ],
    )
    assert space.budget.trials == 5 and space.params["lr"].high == 0.1
    assert space.sampler.type == "random" and space.sampler.seed is None
    assert space.resources.gpu == 0.5 and space.description == "from the command line"
    assert space.fixed == {"kernel_size": 3, "dense_units": 32} and space.budget.time_s is None
    assert space.text == EXAMPLE  # the file as read; overrides are not in it, but kept beside it
    assert space.overrides[0] == "budget.trials=5" and len(space.overrides) == 7
    again = parse_space(space.text, source=space.source, overrides=space.overrides, base_dir=tmp_path)
    assert again.to_dict() == space.to_dict()


def test_overrides_create_missing_sections():
    space = parse_space(MINIMAL, overrides=["scheduler.type=fifo", "params.units={type: int, low: 8, high: 64}"])
    assert space.scheduler.type == "fifo" and space.params["units"].high == 64


@pytest.mark.parametrize(
    "override, field, shows",
    [
        ("budget.trials=0", "budget.trials", "0 is not >= 1"),
        ("params.lr.high=abc", "params.lr.high", "'abc' is not a number"),
        ("sampler={type: rando}", "sampler.type", "did you mean 'random'"),
        ("budget.trails=3", "budget.trails", "did you mean 'trials'"),
        ("name.first=x", "name.first", "name is 'digits-cnn', not a mapping"),
        ("params.batch_size.choices.0=16", "params.batch_size.choices.0", "(a list is written [a, b])"),
        ("budget.trials=[1", "", "YAML syntax error"),
        ("budget.trials", "", "is not KEY=VALUE"),
        ("=5", "", "not a dotted key path"),
        ("budget..trials=5", "", "not a dotted key path"),
    ],
)
def test_override_errors_name_the_override(tmp_path, override, field, shows):
    path = _write(tmp_path, EXAMPLE)
    with pytest.raises(SpaceError) as caught:
        load_space(path, overrides=[override])
    error = caught.value
    assert error.origin == f"--set {override}"
    assert error.line is None and error.field == field
    assert shows in str(error)
    assert str(error).startswith(f"{path} (--set {override}): ")


def test_override_error_keeps_file_lines_for_other_keys(tmp_path):
    path = _write(tmp_path, EXAMPLE)
    with pytest.raises(SpaceError) as caught:
        load_space(path, overrides=["budget.max_epochs=0"])
    assert caught.value.origin == "--set budget.max_epochs=0"
    with pytest.raises(SpaceError) as caught:  # grace_period is in the file; max_epochs came from --set
        load_space(path, overrides=["scheduler.grace_period=4", "budget.max_epochs=3"])
    assert caught.value.field == "scheduler.grace_period" and caught.value.origin == "--set scheduler.grace_period=4"


# -- durations ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("1d", 86400), ("45", 45), (120, 120), ("2h 5m 3s", 7503)],
)
def test_parse_duration_accepts(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5 minutes", "30m1h", "1h1h", "-5m", "-5", "m", True, None, [1], "nan"])
def test_parse_duration_rejects(text):
    with pytest.raises(SpaceError) as caught:
        parse_duration(text)
    assert caught.value.field == "budget.time" and "90s, 30m, 2h" in caught.value.hint


# -- import cost ----------------------------------------------------------------------------------------
def test_import_is_light():
    """`hpsearch validate` must start fast: no torch, Ray, MLflow or Optuna behind `import service.space`."""
    code = (
        "import sys, service.space as s;"
        "s.parse_space(open(sys.argv[1]).read());"
        "print(','.join(m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules))"
    )
    root = Path(__file__).parents[1]
    example = root / "search_spaces" / "digits_cnn.yaml"
    if not example.exists():
        pytest.skip("no example space")
    out = subprocess.run([sys.executable, "-c", code, str(example)], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
