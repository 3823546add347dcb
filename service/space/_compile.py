"""A validated space becomes Optuna objects: a define-by-run function and a sampler.

Optuna is imported inside the functions, so `import service.space` (and `hpsearch validate`) stays fast.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable

from ._conditions import conditions_hold, dependency_order
from ._grid import grid_search_space
from ._samplers import SAMPLERS

if TYPE_CHECKING:
    import optuna

    from ._model import SearchSpace


def define_by_run(space: "SearchSpace") -> Callable[["optuna.trial.Trial"], dict]:
    """An Optuna define-by-run function for `space`, as Ray Tune's OptunaSearch expects.

    It suggests every parameter whose `when:` holds, parents before children, and returns only
    `space.trial_constants()`: OptunaSearch merges the suggested values (trial.params) with that dict.
    The function is picklable (OptunaSearch.save pickles it with the searcher's state).
    """
    return _DefineByRun(space)


class _DefineByRun:
    """A module-level callable rather than a closure, so that plain `pickle` can save it."""

    def __init__(self, space: "SearchSpace") -> None:
        self.space = space

    def __call__(self, trial: "optuna.trial.Trial") -> dict:
        suggest_params(self.space, trial)
        return self.space.trial_constants()

    def __repr__(self) -> str:
        return f"define_by_run({self.space.name!r})"


def sample_config(space: "SearchSpace", trial: "optuna.trial.Trial") -> dict:
    """The whole config of one trial: suggested values plus the constants (what a trainable receives)."""
    return {**suggest_params(space, trial), **space.trial_constants()}


def suggest_params(space: "SearchSpace", trial: "optuna.trial.Trial") -> dict:
    """Suggest the parameters whose conditions hold, parents first; returns {name: value}."""
    order = dependency_order({name: tuple(p.when) for name, p in space.params.items()})
    sampled: dict[str, Any] = {}
    for name in order:
        param = space.params[name]
        if param.when and not conditions_hold(param.when, sampled):
            continue
        if param.type == "categorical":
            sampled[name] = trial.suggest_categorical(name, list(param.choices or ()))
        elif param.type == "int":
            sampled[name] = trial.suggest_int(name, param.low, param.high, step=param.step or 1, log=param.log)
        else:
            sampled[name] = trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    return sampled


def build_sampler(space: "SearchSpace") -> "optuna.samplers.BaseSampler":
    """The Optuna sampler `space.sampler` names, with its options and seed.

    Defaults added here (an option given in the space always wins):
    - tpe with conditional parameters: multivariate=True, group=True, so TPE models the parameters that
      occur together jointly instead of falling back to independent sampling for every conditional one.
    - grid: a GridSampler that does not call study.stop() from tell() (which raises under ask/tell); the
      grid holds every parameter, conditional ones included, so points differing only in a parameter
      whose condition fails repeat a configuration.
    - cmaes, gp, qmc: warn_independent_sampling=False when the space has parameters those samplers cannot
      model (conditionals; for cmaes also categoricals): the fallback to random sampling is expected there,
      and the warning would repeat for every trial.
    """
    import optuna

    spec = space.sampler
    info = SAMPLERS[spec.type]
    options = dict(spec.options)
    has_conditionals = any(p.when for p in space.params.values())
    has_categoricals = any(p.type == "categorical" for p in space.params.values())
    if spec.type == "tpe" and has_conditionals and "group" not in options and options.get("multivariate") is not False:
        options.update(multivariate=True, group=True)
    if spec.type in ("cmaes", "gp", "qmc") and "warn_independent_sampling" in info.options:
        unmodelled = has_conditionals or (spec.type == "cmaes" and has_categoricals)
        if unmodelled:
            options.setdefault("warn_independent_sampling", False)
    if spec.type == "grid":
        options["search_space"] = grid_search_space(space)
    sampler_class = getattr(optuna.samplers, info.class_name)
    if spec.type == "grid":
        from ._grid_sampler import AskTellGridSampler as sampler_class
    with warnings.catch_warnings():
        # `group` and a few cmaes options are marked experimental; the space chose them knowingly.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return sampler_class(seed=spec.seed, **options)
