"""The Optuna samplers a space may name, and which constructor options YAML may set.

The lists are static so that validating a space does not import Optuna (tests/test_space_compile.py checks
them against the real constructor signatures). Options that take Python objects (callables, samplers,
trials) cannot be written in YAML; options Optuna has deprecated are refused with that reason, so a space
does not start depending on something the next Optuna release removes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainables import ParamRule


@dataclass(frozen=True)
class SamplerInfo:
    """One sampler type as a space names it."""

    name: str  # the `sampler.type` value
    class_name: str  # in optuna.samplers
    summary: str  # one line for the JSON schema and previews
    options: dict[str, ParamRule] = field(default_factory=dict)  # settable from YAML, besides `seed`
    not_settable: dict[str, str] = field(default_factory=dict)  # constructor argument → why YAML cannot set it
    multi_objective: bool = True  # can drive a study with several metrics
    single_objective: bool = True  # can drive a study with one metric
    needs: tuple[str, ...] = ()  # Python packages Optuna imports for it only when sampling starts


_PYTHON_OBJECT = "takes a Python object, which a YAML file cannot express"
_DEPRECATED = "is deprecated in Optuna and will be removed"


def _bool(help: str) -> ParamRule:
    return ParamRule("bool", help)


SAMPLERS: dict[str, SamplerInfo] = {
    "tpe": SamplerInfo(
        name="tpe",
        class_name="TPESampler",
        summary="Tree-structured Parzen Estimator; the default, good with conditionals and many trials",
        options={
            "n_startup_trials": ParamRule("int", "random trials before TPE takes over", low=0),
            "n_ei_candidates": ParamRule("int", "candidates scored per suggestion", low=1),
            "multivariate": _bool("model parameters jointly (Optuna's default for one metric)"),
            "group": _bool("split the space by which conditionals a trial used (needs multivariate)"),
            "constant_liar": _bool("steer concurrent suggestions away from running trials"),
        },
        not_settable={
            "consider_prior": _DEPRECATED,
            "prior_weight": _DEPRECATED,
            "consider_magic_clip": _DEPRECATED,
            "consider_endpoints": _DEPRECATED,
            "warn_independent_sampling": _DEPRECATED,
            "gamma": _PYTHON_OBJECT,
            "weights": _PYTHON_OBJECT,
            "constraints_func": _PYTHON_OBJECT,
        },
    ),
    "random": SamplerInfo(
        name="random",
        class_name="RandomSampler",
        summary="independent uniform sampling; a baseline",
    ),
    "cmaes": SamplerInfo(
        name="cmaes",
        class_name="CmaEsSampler",
        summary="CMA-ES over numeric parameters (categoricals and conditionals are sampled at random)",
        options={
            "n_startup_trials": ParamRule("int", "random trials before CMA-ES takes over", low=0),
            "warn_independent_sampling": _bool("warn when a parameter falls back to random sampling"),
            "consider_pruned_trials": _bool("learn from trials ASHA stopped early (experimental)"),
            "popsize": ParamRule("int", "population size", low=1),
            "use_separable_cma": _bool("separable CMA-ES, for many parameters (experimental)"),
            "with_margin": _bool("CMA-ES with margin, for integer/stepped parameters (experimental)"),
            "lr_adapt": _bool("learning-rate adaptation, for noisy objectives (experimental)"),
        },
        not_settable={
            "x0": _DEPRECATED,
            "sigma0": _DEPRECATED,
            "restart_strategy": _DEPRECATED,
            "inc_popsize": _DEPRECATED,
            "independent_sampler": _PYTHON_OBJECT,
            "source_trials": _PYTHON_OBJECT,
        },
        multi_objective=False,
        needs=("cmaes",),
    ),
    "gp": SamplerInfo(
        name="gp",
        class_name="GPSampler",
        summary="Gaussian-process Bayesian optimisation; strong for small budgets (needs torch)",
        options={
            "n_startup_trials": ParamRule("int", "random trials before the GP takes over", low=0),
            "deterministic_objective": _bool("the metric has no noise"),
            "warn_independent_sampling": _bool("warn when a parameter falls back to random sampling"),
        },
        not_settable={"independent_sampler": _PYTHON_OBJECT, "constraints_func": _PYTHON_OBJECT},
        needs=("torch", "scipy"),
    ),
    "qmc": SamplerInfo(
        name="qmc",
        class_name="QMCSampler",
        summary="quasi-Monte Carlo (Sobol or Halton) points: even coverage of the space",
        options={
            "qmc_type": ParamRule("choice", "low-discrepancy sequence", choices=("sobol", "halton")),
            "scramble": _bool("randomise the sequence (uses the seed)"),
            "warn_asynchronous_seeding": _bool("warn when scramble is on but no seed is given"),
            "warn_independent_sampling": _bool("warn when a parameter falls back to random sampling"),
        },
        not_settable={"independent_sampler": _PYTHON_OBJECT},
        needs=("scipy",),
    ),
    "grid": SamplerInfo(
        name="grid",
        class_name="GridSampler",
        summary="every combination of the categorical choices and stepped ranges, in random order",
        not_settable={"search_space": "is built from `params` (choices, and ranges with a step)"},
    ),
    "nsga2": SamplerInfo(
        name="nsga2",
        class_name="NSGAIISampler",
        summary="NSGA-II genetic algorithm for several metrics (a Pareto front)",
        options={
            "population_size": ParamRule("int", "individuals per generation", low=2),
            "mutation_prob": ParamRule("float", "probability of mutating a parameter", low=0, high=1),
            "crossover_prob": ParamRule("float", "probability of crossover", low=0, high=1),
            "swapping_prob": ParamRule("float", "probability of swapping each parameter", low=0, high=1),
        },
        not_settable={
            "mutation": _PYTHON_OBJECT,
            "crossover": _PYTHON_OBJECT,
            "constraints_func": _PYTHON_OBJECT,
            "elite_population_selection_strategy": _PYTHON_OBJECT,
            "child_generation_strategy": _PYTHON_OBJECT,
            "after_trial_strategy": _PYTHON_OBJECT,
        },
        single_objective=False,
    ),
}

MULTI_OBJECTIVE_SAMPLERS = tuple(name for name, info in SAMPLERS.items() if info.multi_objective)
SINGLE_OBJECTIVE_SAMPLERS = tuple(name for name, info in SAMPLERS.items() if info.single_objective)
