"""The search-space file format: YAML in, a validated `SearchSpace` out, and its Optuna translation.

    space = load_space("space.yaml", overrides=["budget.trials=5"])   # SpaceError if anything is wrong
    print(preview(space))
    searcher = OptunaSearch(space=define_by_run(space), sampler=build_sampler(space), ...)

A SpaceError carries every error of the file (`errors`, each with file, line, field, value and hint).
A service validating spaces that others send passes `trainables=TrainablePolicy.from_env()`: user modules
are then admitted by name (HPSEARCH_TRAINABLE_MODULES) and never imported while validating.

Importing this package imports neither Optuna, torch, Ray nor MLflow (`hpsearch validate` starts fast);
the functions that need Optuna import it when called.
"""

from ._compile import build_sampler, define_by_run, sample_config, suggest_params
from ._conditions import conditions_hold, dependency_order, value_key
from ._duration import parse_duration
from ._errors import MAX_REPORTED, SpaceError
from ._grid import grid_search_space
from ._load import load_space, parse_space
from ._model import SearchSpace
from ._param import ParamSpec
from ._preview import preview
from ._rungs import (
    RUNG_CHECK_FIRST,
    asha_rungs,
    bracket_rungs,
    first_checked,
    first_trained_in_full,
    judged_epochs,
    last_checked_against,
    max_brackets,
    rung_cutoff,
    trains_in_full,
)
from ._samplers import SAMPLERS, SamplerInfo
from ._schema import json_schema
from ._sections import Budget, DataSpec, Resources, SamplerSpec, SchedulerSpec
from ._trainable import TrainablePolicy

__all__ = [
    "Budget",
    "DataSpec",
    "MAX_REPORTED",
    "ParamSpec",
    "RUNG_CHECK_FIRST",
    "Resources",
    "SAMPLERS",
    "SamplerInfo",
    "SamplerSpec",
    "SchedulerSpec",
    "SearchSpace",
    "SpaceError",
    "TrainablePolicy",
    "asha_rungs",
    "bracket_rungs",
    "build_sampler",
    "conditions_hold",
    "define_by_run",
    "dependency_order",
    "first_checked",
    "first_trained_in_full",
    "grid_search_space",
    "json_schema",
    "judged_epochs",
    "last_checked_against",
    "load_space",
    "max_brackets",
    "parse_duration",
    "parse_space",
    "preview",
    "rung_cutoff",
    "sample_config",
    "suggest_params",
    "trains_in_full",
    "value_key",
]
