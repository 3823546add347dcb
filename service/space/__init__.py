"""The search-space file format: YAML in, a validated `SearchSpace` out, and its Optuna translation.

    space = load_space("space.yaml", overrides=["budget.trials=5"])   # SpaceError if anything is wrong
    print(preview(space))
    searcher = OptunaSearch(space=define_by_run(space), sampler=build_sampler(space), ...)

Importing this package imports neither Optuna, torch, Ray nor MLflow (`hpsearch validate` starts fast);
the functions that need Optuna import it when called.
"""

from ._compile import build_sampler, define_by_run, sample_config
from ._duration import parse_duration
from ._errors import MAX_REPORTED, SpaceError
from ._grid import grid_search_space
from ._load import load_space, parse_space
from ._model import Budget, DataSpec, ParamSpec, Resources, SamplerSpec, SchedulerSpec, SearchSpace
from ._preview import preview
from ._samplers import SAMPLERS, SamplerInfo
from ._schema import json_schema
from ._trainable import TrainablePolicy

__all__ = [
    "Budget",
    "MAX_REPORTED",
    "DataSpec",
    "ParamSpec",
    "Resources",
    "SAMPLERS",
    "SamplerInfo",
    "SamplerSpec",
    "SchedulerSpec",
    "SearchSpace",
    "SpaceError",
    "TrainablePolicy",
    "build_sampler",
    "define_by_run",
    "grid_search_space",
    "json_schema",
    "load_space",
    "parse_duration",
    "parse_space",
    "preview",
    "sample_config",
]
