"""The malformed spaces the space tests use, in one place, so that the JSON Schema test can run every one of
them through both the schema and `parse_space` (tests/test_space_schema.py).

Each case changes one line of BASE, a valid space, and names the error `parse_space` reports first.
"""

from __future__ import annotations

import re

import pytest

# A valid space using every section (tests/test_space_parse.py), and the least a space needs.
EXAMPLE = """\
name: digits-cnn                  # required; letters, digits, '-', '_' only
description: optional free text
trainable: cnn
data: {dataset: digits, val_fraction: 0.2}
metric: val_acc
mode: max
budget: {trials: 40, max_epochs: 15, concurrency: 2, time: 30m, max_failed_trials: 5}
resources: {cpu: 1, gpu: 0}
sampler: {type: tpe, seed: 0}
scheduler: {type: asha, grace_period: 1, reduction_factor: 3}
params:
  lr:         {type: float, low: 1.0e-4, high: 0.3, log: true}
  batch_size: {type: categorical, choices: [32, 64, 128, 256]}
  optimizer:  {type: categorical, choices: [sgd, adam, rmsprop]}
  momentum:   {type: float, low: 0.0, high: 0.99, when: {optimizer: sgd}}
  conv_blocks: {type: int, low: 1, high: 3}
  maps:       {type: int, low: 8, high: 64, step: 8}
fixed: {kernel_size: 3}
"""

MINIMAL = """\
name: tiny
trainable: mlp
metric: val_acc
params:
  lr: {type: float, low: 1.0e-3, high: 0.1, log: true}
"""

BASE = """\
name: test-study
trainable: mlp
data: {dataset: digits, val_fraction: 0.2}
metric: val_acc
mode: max
budget: {trials: 4, max_epochs: 3, concurrency: 1}
resources: {cpu: 1, gpu: 0}
sampler: {type: tpe, seed: 0}
scheduler: {type: asha, grace_period: 1, reduction_factor: 3}
params:
  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
  optimizer: {type: categorical, choices: [sgd, adam]}
  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}
fixed: {units: 32}
"""


def space_text(changes: dict[str, str]) -> tuple[str, dict[str, int]]:
    """BASE with the line of each key replaced (or appended); returns the text and each key's line."""
    lines = BASE.splitlines()
    for key, new in changes.items():
        for index, line in enumerate(lines):
            if re.match(rf"\s*{re.escape(key)}:", line):
                lines[index] = new
                break
        else:  # a new parameter goes at the end of params:, a new top-level key at the end
            lines.insert(lines.index(BASE.splitlines()[-1]) if new.startswith(" ") else len(lines), new)
    return "\n".join(lines) + "\n", {key: lines.index(new) + 1 for key, new in changes.items()}


def case(case_id, changes, field, shows, fix, line_of=None):
    return pytest.param(changes, field, shows, fix, line_of, id=case_id)


CASES = [
    # -- unknown keys, at every level, with "did you mean" --------------------------------------------
    case("unknown-top-key", {"budjet": "budjet: {trials: 3}"}, "budjet", "'budjet'", "did you mean 'budget'"),
    case("unknown-data-key", {"data": "data: {dataset: digits, val_fracton: 0.2}"}, "data.val_fracton", "'val_fracton'", "did you mean 'val_fraction'"),
    case("unknown-budget-key", {"budget": "budget: {trals: 4}"}, "budget.trals", "'trals'", "did you mean 'trials'"),
    case("unknown-resources-key", {"resources": "resources: {gpus: 1}"}, "resources.gpus", "'gpus'", "did you mean 'gpu'"),
    case("unknown-scheduler-key", {"scheduler": "scheduler: {type: asha, grace_periods: 1}"}, "scheduler.grace_periods", "'grace_periods'", "did you mean 'grace_period'"),
    case("unknown-param-key", {"lr": "  lr: {type: float, low: 1.0e-4, hihg: 0.1}"}, "params.lr.hihg", "'hihg'", "did you mean 'high'"),
    case("unknown-sampler-option", {"sampler": "sampler: {type: tpe, n_startup_trial: 3}"}, "sampler.n_startup_trial", "'n_startup_trial'", "did you mean 'n_startup_trials'"),
    case("sampler-option-python-object", {"sampler": "sampler: {type: tpe, gamma: 0.1}"}, "sampler.gamma", "Python object", "remove it"),
    case("sampler-option-deprecated", {"sampler": "sampler: {type: cmaes, sigma0: 0.1}"}, "sampler.sigma0", "deprecated", "remove it"),
    case("key-read-as-bool", {"on": "on: 3"}, "on", "'on'", "quote it"),
    # -- wrong types ----------------------------------------------------------------------------------
    case("int-field-text", {"budget": "budget: {trials: many}"}, "budget.trials", "'many'", "whole number"),
    case("int-field-fraction", {"budget": "budget: {trials: 2.5}"}, "budget.trials", "2.5", "an integer such as 2"),
    case("text-field-number", {"name": "name: 123"}, "name", "123", "quote it"),
    case("bool-field-text", {"lr": '  lr: {type: float, low: 1.0e-4, high: 0.1, log: "yes"}'}, "params.lr.log", "'yes'", "true or false"),
    case("section-not-mapping", {"budget": "budget: 5"}, "budget", "5", "key: value"),
    case("param-not-mapping", {"lr": "  lr: 0.1"}, "params.lr", "0.1", "fixed:"),
    case("choices-not-list", {"optimizer": "  optimizer: {type: categorical, choices: sgd}"}, "params.optimizer.choices", "'sgd'", "choices: [a, b, c]"),
    case("when-not-mapping", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: sgd}"}, "params.momentum.when", "'sgd'", "when: {optimizer: sgd}"),
    case("fixed-not-mapping", {"fixed": "fixed: [1, 2]"}, "fixed", "[1, 2]", "key: value"),
    case("metric-not-name", {"metric": "metric: 5"}, "metric", "5", "metric: val_acc"),
    case("metric-empty", {"metric": 'metric: ""'}, "metric", "empty", "val_acc"),
    case("numeric-field-bool", {"resources": "resources: {cpu: true}"}, "resources.cpu", "true", "number"),
    # -- name -------------------------------------------------------------------------------------------
    case("name-pattern", {"name": "name: my study"}, "name", "'my study'", "name: my-study"),
    case("name-slash", {"name": "name: a/b"}, "name", "'a/b'", "name: a-b"),
    # -- distributions ----------------------------------------------------------------------------------
    case("param-type-missing", {"lr": "  lr: {low: 1.0e-4, high: 0.1}"}, "params.lr.type", "missing", "type: float, int or categorical"),
    case("param-type-typo", {"lr": "  lr: {type: flaot, low: 1.0e-4, high: 0.1}"}, "params.lr.type", "'flaot'", "did you mean 'float'"),
    case("param-type-foreign", {"lr": "  lr: {type: loguniform, low: 1.0e-4, high: 0.1}"}, "params.lr.type", "'loguniform'", "type: float with log: true"),
    case("float-needs-low", {"lr": "  lr: {type: float, high: 0.1}"}, "params.lr.low", "needs 'low'", "add low"),
    case("int-needs-high", {"lr": "  units: {type: int, low: 1}"}, "params.units.high", "needs 'high'", "add high"),
    case("categorical-needs-choices", {"optimizer": "  optimizer: {type: categorical}"}, "params.optimizer.choices", "needs choices", "choices: [a, b, c]"),
    case("categorical-with-low", {"optimizer": "  optimizer: {type: categorical, choices: [sgd, adam], low: 1}"}, "params.optimizer.low", "categorical", "remove low"),
    case("float-with-choices", {"lr": "  lr: {type: float, low: 0.01, high: 0.1, choices: [0.1]}"}, "params.lr.choices", "float", "type: categorical"),
    case("low-not-below-high", {"lr": "  lr: {type: float, low: 0.5, high: 0.1}"}, "params.lr.low", "0.5 is not below high (0.1)", "make low < high"),
    case("low-equals-high", {"lr": "  units: {type: int, low: 8, high: 8}"}, "params.units.low", "8 is not below high (8)", "fixed:"),
    case("log-low-zero", {"lr": "  lr: {type: float, low: 0.0, high: 0.1, log: true}"}, "params.lr.low", "0.0", "make low > 0"),
    case("log-low-negative-int", {"lr": "  units: {type: int, low: -4, high: 8, log: true}"}, "params.units.low", "-4", "make low > 0"),
    case("step-zero", {"lr": "  lr: {type: float, low: 0.01, high: 0.1, step: 0}"}, "params.lr.step", "0.0", "positive step"),
    case("step-negative-int", {"lr": "  units: {type: int, low: 8, high: 64, step: -8}"}, "params.units.step", "-8", "positive step"),
    case("step-with-log", {"lr": "  lr: {type: float, low: 0.01, high: 0.1, step: 0.01, log: true}"}, "params.lr.step", "0.01", "drop step or drop log"),
    case("step-not-dividing-float", {"lr": "  lr: {type: float, low: 0.01, high: 0.1, step: 0.04}"}, "params.lr.high", "0.1", "high: 0.09"),
    case("step-not-dividing-int", {"lr": "  units: {type: int, low: 8, high: 60, step: 8}"}, "params.units.high", "60", "high: 56"),
    case("int-fractional-bound", {"lr": "  units: {type: int, low: 1.5, high: 8}"}, "params.units.low", "1.5", "use 1 or 2"),
    case("int-fractional-step", {"lr": "  units: {type: int, low: 1, high: 8, step: 0.5}"}, "params.units.step", "0.5", "type: float"),
    case("bound-not-number", {"lr": "  lr: {type: float, low: tiny, high: 0.1}"}, "params.lr.low", "'tiny'", "1.0e-4"),
    # -- non-finite numbers anywhere --------------------------------------------------------------------
    case("nan-bound", {"lr": "  lr: {type: float, low: .nan, high: 0.1}"}, "params.lr.low", ".nan", "finite"),
    case("nan-text-bound", {"lr": '  lr: {type: float, low: "nan", high: 0.1}'}, "params.lr.low", ".nan", "finite"),
    case("inf-fixed", {"fixed": "fixed: {units: .inf}"}, "fixed.units", ".inf", "finite"),
    case("inf-choice", {"optimizer": "  optimizer: {type: categorical, choices: [sgd, -.inf]}"}, "params.optimizer.choices.1", "-.inf", "finite"),
    case("inf-val-fraction", {"data": "data: {val_fraction: .inf}"}, "data.val_fraction", ".inf", "finite"),
    # -- choices ----------------------------------------------------------------------------------------
    case("choices-empty", {"optimizer": "  optimizer: {type: categorical, choices: []}"}, "params.optimizer.choices", "[]", "at least one value"),
    case("choices-non-scalar", {"optimizer": "  optimizer: {type: categorical, choices: [[sgd], adam]}"}, "params.optimizer.choices.0", "['sgd']", "numbers, text"),
    case("choices-duplicate", {"optimizer": "  optimizer: {type: categorical, choices: [sgd, adam, sgd]}"}, "params.optimizer.choices.2", "'sgd' is listed twice", "once"),
    case("choices-duplicate-numbers", {"lr": "  batch_size: {type: categorical, choices: [32, 64, 32.0]}"}, "params.batch_size.choices.2", "32.0", "once"),
    # -- conditions -------------------------------------------------------------------------------------
    case("when-unknown-parent", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {optimiser: sgd}}"}, "params.momentum.when.optimiser", "'optimiser'", "did you mean 'optimizer'"),
    case("when-value-not-a-choice", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: adamw}}"}, "params.momentum.when.optimizer", "'adamw'", "did you mean 'adam'"),
    case("when-value-list-not-a-choice", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: [sgd, rmsprop]}}"}, "params.momentum.when.optimizer", "'rmsprop'", "use one of them"),
    case("when-value-yaml-bool", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: on}}"}, "params.momentum.when.optimizer", "true", "quote such a value: 'on'"),
    case("when-value-outside-range", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {units: 5}}", "lr": "  units: {type: int, low: 8, high: 64}", "fixed": "fixed: {}"}, "params.momentum.when.units", "5", "a value the parent can take"),
    case("when-value-off-int-grid", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {units: 12}}", "lr": "  units: {type: int, low: 8, high: 64, step: 8}", "fixed": "fixed: {}"}, "params.momentum.when.units", "12", "parent's grid"),
    case("when-value-text-on-number", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {lr: high}}"}, "params.momentum.when.lr", "'high'", "[0.0001, 0.1]"),
    case("when-continuous-float-parent", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {lr: 0.01}}"}, "params.momentum.when.lr", "0.01", "give lr a step"),
    case("when-self", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {momentum: 0.5}}"}, "params.momentum.when.momentum", "conditional on itself", "remove momentum"),
    case("when-fixed-parent", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {units: 32}}"}, "params.momentum.when.units", "'units' is fixed", "search units"),
    case("when-empty-list", {"momentum": "  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: []}}"}, "params.momentum.when.optimizer", "no values", "optimizer: [a, b]"),
    case(
        "when-cycle",
        {
            "optimizer": "  optimizer: {type: categorical, choices: [sgd, adam], when: {activation: relu}}",
            "activation": "  activation: {type: categorical, choices: [relu, elu], when: {optimizer: sgd}}",
        },
        "params.optimizer.when.activation",
        "optimizer -> activation -> optimizer",
        "remove one of these conditions",
    ),
    # -- params vs fixed vs reserved --------------------------------------------------------------------
    case("param-also-fixed", {"fixed": "fixed: {units: 32, lr: 0.1}"}, "fixed.lr", "'lr'", "params: or fixed:"),
    case("reserved-in-fixed", {"fixed": "fixed: {max_epochs: 4}"}, "fixed.max_epochs", "'max_epochs'", "budget.max_epochs"),
    case("reserved-in-params", {"lr": "  data: {type: categorical, choices: [a, b]}"}, "params.data", "'data'", "data:"),
    # -- trainable --------------------------------------------------------------------------------------
    case("trainable-unknown", {"trainable": "trainable: ccn"}, "trainable", "'ccn'", "did you mean 'cnn'"),
    case("trainable-bad-target", {"trainable": "trainable: foo:bar:baz"}, "trainable", "'foo:bar:baz'", "mypackage.train:train"),
    case("trainable-module-missing", {"trainable": "trainable: nosuchpkg_for_test.mod:train"}, "trainable", "'nosuchpkg_for_test.mod'", "PYTHONPATH"),
    case("trainable-function-missing", {"trainable": "trainable: json:lods"}, "trainable", "'lods'", "did you mean 'loads'"),
    case("trainable-not-callable", {"trainable": "trainable: json:__name__"}, "trainable", "not a function", "train(config)"),
    # -- names from fixed lists -------------------------------------------------------------------------
    case("dataset-unknown", {"data": "data: {dataset: mnits}"}, "data.dataset", "'mnits'", "did you mean 'mnist'"),
    case("encoding-unknown", {"data": "data: {dataset: csv, path: x.csv, target: y, categorical: one-hot}"}, "data.categorical", "'one-hot'", "did you mean 'onehot'"),
    case("sampler-unknown", {"sampler": "sampler: {type: tpee}"}, "sampler.type", "'tpee'", "did you mean 'tpe'"),
    case("scheduler-unknown", {"scheduler": "scheduler: {type: ashaa}"}, "scheduler.type", "'ashaa'", "did you mean 'asha'"),
    # -- budget, resources, scheduler ranges ------------------------------------------------------------
    case("trials-zero", {"budget": "budget: {trials: 0}"}, "budget.trials", "0 is not >= 1", "trials must be >= 1"),
    case("max-epochs-zero", {"budget": "budget: {max_epochs: 0}"}, "budget.max_epochs", "0 is not >= 1", "max_epochs must be >= 1"),
    case("concurrency-zero", {"budget": "budget: {concurrency: 0}"}, "budget.concurrency", "0 is not >= 1", ">= 1"),
    case("max-failed-negative", {"budget": "budget: {max_failed_trials: -1}"}, "budget.max_failed_trials", "-1", "0 or more, or none"),
    case("time-not-duration", {"budget": "budget: {time: 30 minutes}"}, "budget.time", "'30 minutes'", "30m"),
    case("time-units-out-of-order", {"budget": "budget: {time: 30m1h}"}, "budget.time", "'30m1h'", "1h30m"),
    case("time-zero", {"budget": "budget: {time: 0}"}, "budget.time", "0", "30m"),
    case("cpu-zero", {"resources": "resources: {cpu: 0}"}, "resources.cpu", "0.0 is not > 0", "cpu must be > 0"),
    case("gpu-negative", {"resources": "resources: {gpu: -1}"}, "resources.gpu", "-1.0", "gpu must be >= 0"),
    case("gpu-fraction-above-one", {"resources": "resources: {gpu: 1.5}"}, "resources.gpu", "1.5", "1 or 2"),
    case("grace-period-zero", {"scheduler": "scheduler: {grace_period: 0}"}, "scheduler.grace_period", "0", "at least 1 epoch"),
    case("grace-period-over-max-epochs", {"scheduler": "scheduler: {grace_period: 5}"}, "scheduler.grace_period", "5 is more than budget.max_epochs (3)", "grace_period <= 3"),
    case("grace-period-percent-over-100", {"scheduler": "scheduler: {grace_period: 120%}"}, "scheduler.grace_period", "'120%' is not a percentage in (0, 100]", '"25%"'),
    case("grace-period-percent-zero", {"scheduler": "scheduler: {grace_period: 0%}"}, "scheduler.grace_period", "'0%'", "0.25"),
    case("grace-period-percent-text", {"scheduler": "scheduler: {grace_period: half%}"}, "scheduler.grace_period", "'half%' is not a percentage", '"25%"'),
    case("grace-period-fraction-above-one", {"scheduler": "scheduler: {grace_period: 1.5}"}, "scheduler.grace_period", "1.5 is neither", "a fraction such as 0.25"),
    case("deterministic-without-seed", {"sampler": "sampler: {type: tpe, deterministic: true}"}, "sampler.deterministic", "needs sampler.seed", "add seed: 0"),
    case("deterministic-not-flag", {"sampler": "sampler: {type: tpe, seed: 0, deterministic: yes please}"}, "sampler.deterministic", "'yes please'", "true or false"),
    case("deterministic-with-median", {"sampler": "sampler: {type: tpe, seed: 0, deterministic: true}", "scheduler": "scheduler: {type: median}"}, "scheduler.type", "median scheduler judges trials in the order", "use asha or fifo", line_of="scheduler"),
    case("reduction-factor-one", {"scheduler": "scheduler: {reduction_factor: 1}"}, "scheduler.reduction_factor", "1", "2 or more"),
    case("median-min-samples-zero", {"scheduler": "scheduler: {type: median, min_samples_required: 0}"}, "scheduler.min_samples_required", "0", "1 or more"),
    case("median-with-reduction-factor", {"scheduler": "scheduler: {type: median, reduction_factor: 2}"}, "scheduler.reduction_factor", "median", "remove reduction_factor"),
    case("fifo-with-grace-period", {"scheduler": "scheduler: {type: fifo, grace_period: 2}"}, "scheduler.grace_period", "fifo", "remove grace_period"),
    # -- data -------------------------------------------------------------------------------------------
    case("val-fraction-one", {"data": "data: {val_fraction: 1.0}"}, "data.val_fraction", "1.0", "0.2"),
    case("val-fraction-zero", {"data": "data: {val_fraction: 0}"}, "data.val_fraction", "0.0", "0.2"),
    case("data-seed-negative", {"data": "data: {seed: -3}"}, "data.seed", "-3", ">= 0"),
    case("csv-needs-path", {"data": "data: {dataset: csv, target: y}"}, "data.path", "needs 'path'", "add path:"),
    case("csv-needs-target", {"data": "data: {dataset: csv, path: x.csv}"}, "data.target", "needs 'target'", "add target:"),
    case("mnist-needs-root", {"data": "data: {dataset: mnist}"}, "data.root", "needs 'root'", "add root:"),
    case("root-for-digits", {"data": "data: {dataset: digits, root: /tmp}"}, "data.root", "'/tmp'", "remove root"),
    case(
        "cnn-needs-images",
        {"trainable": "trainable: cnn", "data": "data: {dataset: csv, path: x.csv, target: y}", "fixed": "fixed: {}"},
        "data.dataset",
        "'csv'",
        "digits, mnist",
        "data",
    ),
    # -- metric and mode --------------------------------------------------------------------------------
    case("metric-not-reported", {"metric": "metric: val_accuracy"}, "metric", "'val_accuracy'", "did you mean 'val_acc'"),
    case("metric-list-not-reported", {"metric": "metric: [val_acc, f1]", "mode": "mode: [max, max]"}, "metric.1", "'f1'", "it reports"),
    case("metric-duplicate", {"metric": "metric: [val_acc, val_acc]", "mode": "mode: [max, max]"}, "metric.1", "'val_acc' is listed twice", "once"),
    case("mode-unknown", {"mode": "mode: maximize"}, "mode", "'maximize'", "did you mean 'max'"),
    case("mode-list-too-short", {"metric": "metric: [val_acc, n_params]", "mode": "mode: [max]"}, "mode", "['max']", "one mode per metric", "mode"),
    case("mode-word-for-list", {"metric": "metric: [val_acc, n_params]"}, "mode", "'max'", "one mode per metric", 5),
    case("mode-list-for-word", {"mode": "mode: [max, min]"}, "mode", "['max', 'min']", "one mode per metric"),
    case("multi-with-cmaes", {"metric": "metric: [val_acc, n_params]", "mode": "mode: [max, min]", "sampler": "sampler: {type: cmaes}"}, "sampler.type", "'cmaes'", "nsga2", "sampler"),
    case("multi-with-median", {"metric": "metric: [val_acc, n_params]", "mode": "mode: [max, min]", "scheduler": "scheduler: {type: median}"}, "scheduler.type", "median", "asha", "scheduler"),
    case("nsga2-single-metric", {"sampler": "sampler: {type: nsga2}"}, "sampler.type", "'nsga2'", "tpe"),
    # -- the trainable's catalog ------------------------------------------------------------------------
    case("param-not-in-catalog", {"lr": "  hidden_layer: {type: int, low: 1, high: 3}"}, "params.hidden_layer", "'hidden_layer'", "did you mean 'hidden_layers'"),
    case("fixed-not-in-catalog", {"fixed": "fixed: {unit: 32}"}, "fixed.unit", "'unit'", "did you mean 'units'"),
    case("catalog-range-high-open", {"lr": "  dropout: {type: float, low: 0.0, high: 1.0}"}, "params.dropout.high", "1.0", "make high < 1"),
    case("catalog-range-low-open", {"lr": "  lr: {type: float, low: 0, high: 0.1}"}, "params.lr.low", "0.0", "make low > 0"),
    case("catalog-range-above", {"lr": "  hidden_layers: {type: int, low: 1, high: 32}"}, "params.hidden_layers.high", "32", "make high <= 16"),
    case("catalog-int-as-float", {"lr": "  batch_size: {type: float, low: 16, high: 64}"}, "params.batch_size.type", "searched as float", "type: int"),
    case("catalog-choice-not-allowed", {"optimizer": "  optimizer: {type: categorical, choices: [sgd, adamw]}"}, "params.optimizer.choices.1", "'adamw'", "did you mean 'adam'"),
    case("catalog-choice-as-range", {"optimizer": "  optimizer: {type: int, low: 0, high: 3}", "momentum": "  momentum: {type: float, low: 0.0, high: 0.9}"}, "params.optimizer.type", "searched as int", "type: categorical"),
    case("catalog-bool-as-range", {"lr": "  batch_norm: {type: int, low: 0, high: 1}"}, "params.batch_norm.type", "searched as int", "choices: [true, false]"),
    case("catalog-bool-choices", {"lr": "  batch_norm: {type: categorical, choices: [0, 1]}"}, "params.batch_norm.choices.0", "0", "true or false"),
    case("catalog-int-choice-float", {"lr": "  batch_size: {type: categorical, choices: [32, 64.0]}"}, "params.batch_size.choices.1", "64.0", "write 64"),
    case("catalog-int-fixed-float", {"fixed": "fixed: {units: 32.0}"}, "fixed.units", "32.0", "write 32"),
    case("catalog-fixed-out-of-range", {"fixed": "fixed: {units: 0}"}, "fixed.units", "0", "[1, 65536]"),
    case("catalog-fixed-choice", {"fixed": "fixed: {activation: relu6}"}, "fixed.activation", "'relu6'", "did you mean 'relu'"),
    # -- sampler ----------------------------------------------------------------------------------------
    case("grid-float-without-step", {"sampler": "sampler: {type: grid}"}, "params.lr", "'lr'", "give lr a step (e.g. step: 0.01)", 11),
    case("sampler-option-value", {"sampler": "sampler: {type: tpe, n_startup_trials: -1}"}, "sampler.n_startup_trials", "-1", "an integer >= 0"),
    case("sampler-option-choice", {"sampler": "sampler: {type: qmc, qmc_type: lhs}"}, "sampler.qmc_type", "'lhs'", "sobol, halton"),
    case("sampler-group-without-multivariate", {"sampler": "sampler: {type: tpe, group: true, multivariate: false}"}, "sampler.group", "multivariate", "set multivariate: true"),
    case("sampler-seed-negative", {"sampler": "sampler: {type: tpe, seed: -1}"}, "sampler.seed", "-1", ">= 0"),
]


def without_key(key: str) -> str:
    """BASE without its top-level `key`."""
    return "\n".join(line for line in BASE.splitlines() if not line.startswith(f"{key}:")) + "\n"


PARAMS_MISSING = BASE.split("params:")[0] + "fixed: {units: 32}\n"
PARAMS_EMPTY = BASE.split("params:")[0] + "params: {}\n"
# What `hpsearch best -o` writes: the fixed configuration, trained once (budget.trials: 1, no params).
TRAIN_ONCE = PARAMS_EMPTY.replace("budget: {trials: 4,", "budget: {trials: 1,")
MODES_MISSING = BASE.replace("metric: val_acc", "metric: [val_acc, n_params]").replace("mode: max\n", "")

# Several errors from every stage at once (tests/test_space_findings.py); keep each key on its line.
MANY = """\
name: many
trainable: cnn
metric: val_accuracy
colour: blue
budget: {trials: 0, max_epochs: 4}
params:
  lr: {type: float, low: 0.1, hihg: 0.5}
  dropuot: {type: float, low: 0.1, high: 0.5}
  maps: {type: int, low: 8, high: 64, step: .nan}
fixed: {kernel_size: 3.5}
"""


def _small(*lines: str, trainable: str = "mlp", metric: str = "val_acc", params: bool = True) -> str:
    head = ["name: s"] + ([f"trainable: {trainable}"] if trainable else []) + ([f"metric: {metric}"] if metric else [])
    tail = ["params:", "  lr: {type: float, low: 0.001, high: 0.1}"] if params else []
    return "\n".join(head + list(lines) + tail) + "\n"


# A part the model refuses is left out of the checks that read it (tests/test_space_findings.py): the file,
# and the (line, field) of every error reported.
REFUSED_PART_CASES = [
    # a broken metric is not compared with the modes, the sampler or the scheduler
    pytest.param(_small("mode: [max, min]", "sampler: {type: nsga2}", metric="5"), [(3, "metric")], id="metric"),
    # a broken budget is not compared with the scheduler's grace period
    pytest.param(_small("budget: {max_epochs: 0}", "scheduler: {grace_period: 5}"), [(4, "budget.max_epochs")], id="budget"),
    # a refused parameter is not reported again as an unknown parent of a condition
    pytest.param(
        _small(
            "params:",
            "  optimizer: {type: categorical}",
            "  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}",
            params=False,
        ),
        [(5, "params.optimizer.choices")],
        id="param",
    ),
    # a trainable that is not text is not looked up, and nothing is checked against a stand-in
    pytest.param(_small("trainable: 5", trainable="", metric="f1"), [(3, "trainable")], id="trainable"),
]

# One mistake that several stages or rules see is reported once.
ONE_MISTAKE_CASES = [
    pytest.param(_small("fixed: {units: .inf}"), [(4, "fixed.units")], id="raw-then-catalog"),
    pytest.param(
        _small("params:", "  data: {type: categorical, choices: [a, b]}", params=False),
        [(5, "params.data")],
        id="reserved-then-catalog",
    ),
    pytest.param(
        _small("params:", "  momentum: {type: float, low: 0.0, high: 0.9, when: {momentum: 0.5}}", params=False),
        [(5, "params.momentum.when.momentum")],
        id="self-then-cycle",
    ),
]

# Keys and values MLflow refuses (tests/test_space_mlflow_keys.py), in a space of a user's trainable, which
# has no catalog to refuse them first. Needs `hps_keys_trainable.py` (def train(config)) importable.
USER_SPACE = """\
name: keys
trainable: hps_keys_trainable:train
metric: {metric}
params:
  {param}: {{type: float, low: 0.1, high: 0.5}}
fixed:
  {fixed_key}: {fixed_value}
"""
USER_TRAINABLE = ("hps_keys_trainable.py", "def train(config):\n    pass\n")


def user_space(metric="score", param="lr", fixed_key="width", fixed_value="3") -> str:
    return USER_SPACE.format(metric=metric, param=param, fixed_key=fixed_key, fixed_value=fixed_value)


MLFLOW_KEY_CASES = [
    pytest.param({"param": "'lr%'"}, 5, "params.lr%", "allows only letters, digits", "rename it, e.g. 'lr_'", id="param-character"),
    pytest.param({"param": "a//b"}, 5, "params.a//b", "would resolve to 'a/b'", "rename it, e.g. 'a/b'", id="param-path"),
    pytest.param({"fixed_key": "'/abs'"}, 7, "fixed./abs", "treats keys as file paths", "rename it, e.g. 'abs'", id="fixed-absolute"),
    pytest.param({"fixed_key": "k" * 251}, 7, "fixed." + "k" * 251, "more than the 250 MLflow allows", "shorter name", id="fixed-length"),
    pytest.param({"fixed_value": "x" * 6001}, 7, "fixed.width", "6001 characters as text, more than the 6000", "shorten it", id="fixed-value"),
    pytest.param({"metric": "'acc%'"}, 3, "metric", "MLflow metric key", "a name MLflow accepts", id="metric"),
]
