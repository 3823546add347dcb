"""From a space to Optuna: define-by-run suggestions, conditionals, samplers, the grid, the preview."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import warnings
from decimal import Decimal

import pytest

import optuna

from service.space import (  # noqa: E402
    SAMPLERS,
    SpaceError,
    build_sampler,
    define_by_run,
    grid_search_space,
    parse_space,
    preview,
    sample_config,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

ALL_DISTRIBUTIONS = """\
name: distributions
trainable: hps_compile_trainable:train
metric: score
sampler: {{type: {sampler}, seed: 1{options}}}
params:
  f:     {{type: float, low: -2.5, high: 3.0}}
  flog:  {{type: float, low: 1.0e-4, high: 0.1, log: true}}
  fstep: {{type: float, low: 0.1, high: 0.9, step: 0.2}}
  i:     {{type: int, low: -3, high: 7}}
  ilog:  {{type: int, low: 1, high: 1024, log: true}}
  istep: {{type: int, low: 8, high: 64, step: 8}}
  c:     {{type: categorical, choices: [a, 2, 3.5, true, null]}}
fixed: {{width: 3}}
"""


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A folder with a user trainable, so the spaces here can use any parameter names."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "hps_compile_trainable.py").write_text("def train(config):\n    pass\n")
    return folder


def _space(text: str, user_dir, **kwargs):
    return parse_space(text, base_dir=user_dir, **kwargs)


def _run(space, n_trials: int, values=lambda i: float(i % 7)) -> list[dict]:
    """Ask/tell like Ray's OptunaSearch does; returns each trial's full config."""
    study = optuna.create_study(sampler=build_sampler(space), directions=["maximize"] * len(space.metrics))
    suggest = define_by_run(space)
    configs = []
    for index in range(n_trials):
        trial = study.ask()
        constants = suggest(trial)
        configs.append({**trial.params, **constants})
        value = values(index)
        study.tell(trial, [value] * len(space.metrics) if space.is_multi_objective else value)
    return configs


def _in_bounds(config: dict) -> None:
    assert -2.5 <= config["f"] <= 3.0 and isinstance(config["f"], float)
    assert 1e-4 <= config["flog"] <= 0.1
    k = (Decimal(str(config["fstep"])) - Decimal("0.1")) / Decimal("0.2")
    assert 0.1 <= config["fstep"] <= 0.9 and abs(k - round(k)) < Decimal("1e-9")
    assert -3 <= config["i"] <= 7 and isinstance(config["i"], int)
    assert 1 <= config["ilog"] <= 1024 and isinstance(config["ilog"], int)
    assert config["istep"] in range(8, 65, 8)
    assert config["c"] in ("a", 2, 3.5, True, None)
    assert config["width"] == 3 and config["max_epochs"] == 10 and config["data"]["dataset"] == "digits"


# -- distributions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sampler, options, trials",
    [
        ("random", "", 30),
        ("tpe", ", n_startup_trials: 3", 15),
        ("qmc", ", scramble: true", 12),
        pytest.param("cmaes", ", n_startup_trials: 2", 12, marks=pytest.mark.skipif(
            importlib.util.find_spec("cmaes") is None, reason="cmaes package not installed")),
        ("gp", ", n_startup_trials: 3", 6),
    ],
)
def test_define_by_run_samples_every_distribution_within_bounds(user_dir, sampler, options, trials):
    space = _space(ALL_DISTRIBUTIONS.format(sampler=sampler, options=options), user_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # qmc/gp/cmaes say when they fall back to random sampling
        configs = _run(space, trials)
    for config in configs:
        _in_bounds(config)
    assert len({c["f"] for c in configs}) > 1


def test_define_by_run_returns_only_the_constants(user_dir):
    space = _space(ALL_DISTRIBUTIONS.format(sampler="random", options=""), user_dir)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    returned = define_by_run(space)(trial)
    assert returned == space.trial_constants()
    assert set(trial.params) == set(space.params)


@pytest.mark.parametrize("kind", list(SAMPLERS))
def test_define_by_run_and_every_sampler_survive_pickling(kind):
    """Tune pickles the searcher, its study's sampler included, when it saves a study's state (and at the
    Tuner's start); the define-by-run function goes with it. Optuna 5.1's genetic samplers hold a lock that
    does not pickle: pyproject.toml keeps Optuna below 5.1."""
    import pickle

    if kind == "cmaes" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("cmaes package not installed")
    space = _small(kind, multi=kind == "nsga2")
    suggest, sampler = pickle.loads(pickle.dumps((define_by_run(space), build_sampler(space))))
    directions = ["maximize", "minimize"] if kind == "nsga2" else ["maximize"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = optuna.create_study(sampler=sampler, directions=directions).ask()
        assert suggest(trial) == space.trial_constants() and "lr" in trial.params


def test_sample_config_merges_suggestions_and_constants(user_dir):
    space = _space(ALL_DISTRIBUTIONS.format(sampler="random", options=""), user_dir)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    config = sample_config(space, trial)
    assert set(config) == set(space.params) | {"width", "data", "max_epochs"}
    _in_bounds(config)


# -- conditionals --------------------------------------------------------------------------------------------
CONDITIONAL = """\
name: conditional
trainable: mlp
metric: val_acc
sampler: {type: random, seed: 3}
params:
  momentum:  {type: float, low: 0.0, high: 0.9, when: {optimizer: [sgd, rmsprop]}}
  nesterov:  {type: categorical, choices: [true, false], when: {optimizer: sgd, batch_norm: true}}
  optimizer: {type: categorical, choices: [sgd, adam, rmsprop]}
  batch_norm: {type: categorical, choices: [true, false]}
  lr:        {type: float, low: 1.0e-4, high: 0.1, log: true}
"""


def test_conditional_params_appear_only_when_their_conditions_hold():
    space = parse_space(CONDITIONAL)
    configs = _run(space, 60)
    for config in configs:
        assert ("momentum" in config) == (config["optimizer"] in ("sgd", "rmsprop"))
        assert ("nesterov" in config) == (config["optimizer"] == "sgd" and config["batch_norm"] is True)
        assert "lr" in config
    # every branch was exercised
    assert {c["optimizer"] for c in configs} == {"sgd", "adam", "rmsprop"}
    assert any("nesterov" in c for c in configs) and any("momentum" not in c for c in configs)


NESTED = """\
name: nested
trainable: hps_compile_trainable:train
metric: score
sampler: {{type: {sampler}, seed: 0}}
params:
  c: {{type: int, low: 1, high: 4, when: {{b: "on"}}}}
  b: {{type: categorical, choices: ["on", "off"], when: {{a: 2}}}}
  a: {{type: int, low: 1, high: 3}}
"""


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_nested_conditions_follow_their_parents(user_dir, sampler):
    space = _space(NESTED.format(sampler=sampler), user_dir)
    configs = _run(space, 50)
    for config in configs:
        assert ("b" in config) == (config["a"] == 2)
        assert ("c" in config) == (config.get("b") == "on")
    assert any("c" in config for config in configs)


def test_tpe_models_conditionals_jointly_by_default():
    sampler = build_sampler(parse_space(CONDITIONAL.replace("type: random", "type: tpe")))
    assert sampler._multivariate is True and sampler._group is True
    plain = build_sampler(parse_space(CONDITIONAL.replace("type: random", "type: tpe, group: false")))
    assert plain._group is False
    no_conditionals = CONDITIONAL.replace("type: random", "type: tpe").split("  momentum:")[0]
    no_conditionals += "  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}\n"
    assert build_sampler(parse_space(no_conditionals))._group is False


# -- samplers ------------------------------------------------------------------------------------------------
SMALL = """\
name: small
trainable: mlp
metric: {metric}
mode: {mode}
sampler: {{type: {sampler}, seed: 0}}
params:
  lr:        {{type: float, low: 0.01, high: 0.05, step: 0.01}}
  optimizer: {{type: categorical, choices: [sgd, adam]}}
  units:     {{type: int, low: 16, high: 48, step: 16}}
  momentum:  {{type: float, low: 0.0, high: 0.5, step: 0.25, when: {{optimizer: sgd}}}}
"""


def _small(sampler: str, multi: bool = False):
    metric, mode = ("[val_acc, n_params]", "[max, min]") if multi else ("val_acc", "max")
    return parse_space(SMALL.format(sampler=sampler, metric=metric, mode=mode))


@pytest.mark.parametrize("kind", list(SAMPLERS))
def test_every_sampler_builds_and_samples(kind):
    if kind == "cmaes" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("cmaes package not installed")
    space = _small(kind, multi=kind == "nsga2")
    sampler = build_sampler(space)
    assert isinstance(sampler, getattr(optuna.samplers, SAMPLERS[kind].class_name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        configs = _run(space, 4)
    assert all(0.01 <= c["lr"] <= 0.05 and c["units"] in (16, 32, 48) for c in configs)


def test_grid_enumerates_exactly_the_product():
    space = _small("grid")
    grid = grid_search_space(space)
    assert grid == {
        "lr": [0.01, 0.02, 0.03, 0.04, 0.05],
        "optimizer": ["sgd", "adam"],
        "units": [16, 32, 48],
        "momentum": [0.0, 0.25, 0.5],
    }
    size = 5 * 2 * 3 * 3
    study = optuna.create_study(sampler=build_sampler(space))
    suggest = define_by_run(space)
    for _ in range(size):
        trial = study.ask()
        suggest(trial)
        study.tell(trial, 0.0)  # the last tell must not raise (GridSampler calls study.stop())
    assert {t.system_attrs["grid_id"] for t in study.trials} == set(range(size))
    assert study.sampler.is_exhausted(study)
    assert isinstance(study.sampler, optuna.samplers.GridSampler)


def test_grid_points_cover_all_choices_and_steps():
    space = _small("grid")
    configs = _run(space, 90)
    combos = {(c["lr"], c["optimizer"], c["units"]) for c in configs}
    assert combos == set(itertools.product([0.01, 0.02, 0.03, 0.04, 0.05], ["sgd", "adam"], [16, 32, 48]))


def test_grid_too_large_is_rejected():
    text = SMALL.format(sampler="grid", metric="val_acc", mode="max").replace(
        "units:     {type: int, low: 16, high: 48, step: 16}", "units:     {type: int, low: 1, high: 65536}"
    ).replace("step: 0.01}", "step: 0.0001}")
    with pytest.raises(SpaceError, match=r"sampler.type: the grid has \d+ points, more than 1000000"):
        parse_space(text, source="space.yaml")


def test_sampler_missing_package_is_a_validation_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a))
    with pytest.raises(SpaceError, match=r"sampler.type: the cmaes sampler needs the Python package 'cmaes'.*pip install cmaes"):
        _small("cmaes")


@pytest.mark.parametrize("kind", list(SAMPLERS))
def test_sampler_option_lists_match_optuna_signatures(kind):
    info = SAMPLERS[kind]
    signature = inspect.signature(getattr(optuna.samplers, info.class_name).__init__)
    real = set(signature.parameters) - {"self"}
    listed = set(info.options) | set(info.not_settable) | {"seed"}
    assert listed == real
    assert not set(info.options) & set(info.not_settable)


VALID_OPTIONS = {
    "tpe": {"n_startup_trials": 3, "n_ei_candidates": 8, "multivariate": True, "group": True, "constant_liar": False},
    "random": {},
    "cmaes": {
        "n_startup_trials": 2,
        "warn_independent_sampling": False,
        "consider_pruned_trials": True,
        "popsize": 4,
        "use_separable_cma": False,
        "with_margin": True,
        "lr_adapt": False,
    },
    "gp": {"n_startup_trials": 2, "deterministic_objective": True, "warn_independent_sampling": False},
    "qmc": {"qmc_type": "halton", "scramble": True, "warn_asynchronous_seeding": False, "warn_independent_sampling": False},
    "grid": {},
    "nsga2": {"population_size": 4, "mutation_prob": 0.1, "crossover_prob": 0.8, "swapping_prob": 0.4},
}


@pytest.mark.parametrize("kind", list(SAMPLERS))
def test_every_listed_option_reaches_the_constructor(kind):
    if kind == "cmaes" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("cmaes package not installed")
    assert set(VALID_OPTIONS[kind]) == set(SAMPLERS[kind].options)
    options = "".join(f", {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in VALID_OPTIONS[kind].items())
    space = parse_space(SMALL.format(sampler=kind + options, metric="[val_acc, n_params]" if kind == "nsga2" else "val_acc",
                                     mode="[max, min]" if kind == "nsga2" else "max"))
    assert space.sampler.options == VALID_OPTIONS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # nothing deprecated slips through
        build_sampler(space)


DEPRECATED_VALUES = {
    "consider_prior": True,
    "prior_weight": 1.0,
    "consider_magic_clip": True,
    "consider_endpoints": False,
    "warn_independent_sampling": False,
    "x0": {"lr": 0.01},
    "sigma0": 0.1,
    "restart_strategy": "ipop",
    "inc_popsize": 2,
}


@pytest.mark.parametrize(
    "kind, option",
    [(kind, name) for kind, info in SAMPLERS.items() for name, why in info.not_settable.items() if "deprecated" in why],
)
def test_options_refused_as_deprecated_are_deprecated_in_optuna(kind, option):
    if kind == "cmaes" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("cmaes package not installed")
    with pytest.warns(FutureWarning):
        getattr(optuna.samplers, SAMPLERS[kind].class_name)(**{option: DEPRECATED_VALUES[option]})


# -- preview -------------------------------------------------------------------------------------------------
def test_preview_lists_params_settings_and_samples(capsys):
    text = CONDITIONAL + "fixed: {units: 64}\nbudget: {trials: 7, time: 1h30m}\n"
    space = parse_space(text)
    shown = preview(space, n=4)
    for name in space.params:
        assert name in shown
    assert "lr          float  [0.0001, 0.1] log" in shown
    assert "when optimizer = [sgd, rmsprop]" in shown
    assert "when optimizer = sgd and batch_norm = true" in shown
    assert "fixed:     units=64" in shown
    assert "7 trials" in shown and "time limit 1h30m" in shown
    assert "sampler:   random (seed 3)" in shown
    assert "scheduler: asha" in shown
    samples = [line for line in shown.splitlines() if line.lstrip()[:2] in ("1.", "2.", "3.", "4.")]
    assert len(samples) == 4 and all("optimizer=" in line and "lr=" in line for line in samples)
    assert "A new study created" not in capsys.readouterr().err
    assert preview(space, n=0).count("optimizer=") == 0
