"""The typed, frozen search space: its top-level keys, and the sections it is made of.

Every model forbids unknown keys. Validators raise `Issue` (a ValueError carrying a sub-path, the offending
value and a fix); `_load.py` turns pydantic's errors into SpaceErrors with the file and line. The sections
are in `_sections.py` and `_param.py`. Nothing here imports the rules that relate sections to each other,
the trainable, its catalog or the data files: `_check.py` runs those on the built model.

Defaults (also given in `json_schema()`):

    data:      {dataset: digits, val_fraction: 0.2, seed: 0}    csv adds categorical: onehot
    mode:      max                                               required as a list for several metrics
    budget:    {trials: 20, max_epochs: 10, concurrency: 2, time: none, max_failed_trials: none, max_retries: 3}
    resources: {cpu: 1, gpu: 0}                                  per trial
    sampler:   {type: tpe, seed: none, deterministic: false}
    scheduler: {type: asha, grace_period: 1, reduction_factor: 3, brackets: 1}   median: min_samples_required 3
"""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Optional, Union

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema

from trainables import BUILTIN_TRAINABLES, TrainableSpec

from ._errors import Issue, did_you_mean, show
from ._param import ParamSpec
from ._sections import SCHEDULER_KEYS, Budget, DataSpec, Resources, SamplerSpec, SchedulerSpec
from ._types import Frozen, Text

MODES = ("max", "min")
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
# A user's trainable: package.module:function (the module is looked up later, under a TrainablePolicy).
TARGET_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"


# -- metric and mode --------------------------------------------------------------------------------------
def _metric(value: Any) -> Union[str, list]:
    if isinstance(value, str):
        if not value.strip():
            raise Issue("is empty", "name a metric the trainable reports, e.g. val_acc", value=value)
        return value
    if isinstance(value, list):
        if not value:
            raise Issue("[] names no metric", "name one metric, or a list for several objectives", value=value)
        seen = set()
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise Issue(f"{show(item)} is not a metric name", "write names such as val_acc", at=(index,), value=item)
            if item in seen:
                raise Issue(f"{item!r} is listed twice", "list each metric once", at=(index,), value=item)
            seen.add(item)
        return list(value)
    raise Issue(f"{show(value)} is not a metric name", "write metric: val_acc or metric: [val_acc, n_params]", value=value)


_METRIC_NAME = {"type": "string", "pattern": r"\S"}
_METRIC_SCHEMA = {"anyOf": [_METRIC_NAME, {"type": "array", "items": _METRIC_NAME, "minItems": 1, "uniqueItems": True}]}


def _mode_word(value: Any, at: tuple = ()) -> str:
    if value in MODES:
        return value
    if isinstance(value, str) and value.lower()[:3] in MODES:
        raise Issue(f"unknown mode {show(value)}", f"did you mean {value.lower()[:3]!r}? (max or min)", at=at, value=value)
    raise Issue(f"unknown mode {show(value)}", did_you_mean(value, MODES), at=at, value=value)


def _mode(value: Any) -> Union[str, list]:
    if isinstance(value, list):
        if not value:
            raise Issue("[] names no mode", "give max or min, one per metric", value=value)
        return [_mode_word(item, (index,)) for index, item in enumerate(value)]
    return _mode_word(value)


_MODE_SCHEMA = {"anyOf": [{"enum": list(MODES)}, {"type": "array", "items": {"enum": list(MODES)}, "minItems": 1}]}
_TRAINABLE_SCHEMA = {"anyOf": [{"enum": list(BUILTIN_TRAINABLES)}, {"type": "string", "pattern": TARGET_PATTERN}]}


# -- the space --------------------------------------------------------------------------------------------
class SearchSpace(Frozen):
    """A validated search space: what to train, on what, what to search, how much, and how.

    Build it with `load_space` / `parse_space`. The model checks each section on its own and nothing else:
    it imports no user code and reads no files. The rules between sections, the trainable, its catalog and
    the data files are checked after it is built (`_check.py`), so constructing it directly skips them.
    """

    name: Text = Field(
        description="study name: letters, digits, '-' and '_' (used in paths and run names)",
        json_schema_extra={"pattern": NAME_PATTERN},
    )
    description: Optional[Text] = Field(None, description="free text shown with the study")
    trainable: Annotated[Text, WithJsonSchema(_TRAINABLE_SCHEMA)] = Field(
        description="a built-in trainable (mlp, cnn, synthetic) or package.module:function"
    )
    data: DataSpec = Field(default_factory=DataSpec, description="the dataset every trial trains on")
    metric: Annotated[Union[str, list[str]], BeforeValidator(_metric), WithJsonSchema(_METRIC_SCHEMA)] = Field(
        description="a metric the trainable reports, or a list of them for several objectives"
    )
    mode: Annotated[Union[str, list[str]], BeforeValidator(_mode), WithJsonSchema(_MODE_SCHEMA)] = Field(
        "max", description="max or min; a list, one per metric, for several objectives"
    )
    budget: Budget = Field(default_factory=Budget, description="how much search")
    resources: Resources = Field(default_factory=Resources, description="what each trial reserves")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec, description="the Optuna sampler")
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec, description="the Tune scheduler")
    params: dict[str, ParamSpec] = Field(
        description="the hyperparameters to search: at least one, or none with budget.trials: 1 (the fixed "
                    "configuration trained once: what `hpsearch best -o` writes and `hpsearch train` runs)"
    )
    fixed: dict[str, Any] = Field(default_factory=dict, description="constants passed to every trial")
    retrain_of: Optional[Text] = Field(
        None, description="the study whose best configuration this space trains once (written by `hpsearch best "
                          "-o`); `hpsearch train` tags its run hpsearch.retrain_of with it"
    )
    # Filled in by the loader, not written in a file (so not in the JSON Schema either).
    source: SkipJsonSchema[str] = Field("<string>", description="the file the space was read from")
    text: SkipJsonSchema[str] = Field("", description="the YAML text as read, before overrides")
    overrides: SkipJsonSchema[tuple[str, ...]] = Field((), description="the --set KEY=VALUE overrides applied")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(NAME_PATTERN, value):
            fixed = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-") or "my-study"
            raise Issue(
                f"{show(value)} may only contain letters, digits, '-' and '_'",
                f"e.g. name: {fixed}",
                value=value,
            )
        return value

    # -- derived views ----------------------------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def modes(self) -> list[str]:
        return [self.mode] if isinstance(self.mode, str) else list(self.mode)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def trainable_spec(self) -> Optional[TrainableSpec]:
        """The catalog entry of a built-in trainable; None for a user's package.module:function."""
        return BUILTIN_TRAINABLES.get(self.trainable)

    @property
    def grace_epochs(self) -> int:
        """scheduler.grace_period in epochs (a percentage or fraction of budget.max_epochs resolved)."""
        return self.scheduler.grace_epochs(self.budget.max_epochs)

    def trial_constants(self) -> dict:
        """What every trial's config holds besides the searched values."""
        return {**copy.deepcopy(self.fixed), "data": self.data.model_dump(), "max_epochs": self.budget.max_epochs}

    def to_dict(self) -> dict:
        """The space as plain data (YAML-dumpable); parsing it again gives an equal space."""
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["trainable"] = self.trainable
        out["data"] = self.data.applicable()
        out["metric"] = self.metric if isinstance(self.metric, str) else list(self.metric)
        out["mode"] = self.mode if isinstance(self.mode, str) else list(self.mode)
        out["budget"] = self.budget.model_dump(by_alias=True)
        out["resources"] = self.resources.model_dump()
        out["sampler"] = {"type": self.sampler.type, "seed": self.sampler.seed, **self.sampler.options}
        if self.sampler.deterministic:
            out["sampler"]["deterministic"] = True
        out["scheduler"] = {"type": self.scheduler.type}
        out["scheduler"].update({k: getattr(self.scheduler, k) for k in SCHEDULER_KEYS[self.scheduler.type]})
        out["params"] = {name: p.to_dict() for name, p in self.params.items()}
        out["fixed"] = copy.deepcopy(self.fixed)
        if self.retrain_of is not None:
            out["retrain_of"] = self.retrain_of
        return out


# The keys a space file may hold at its top level (the others are filled in by the loader).
LOADER_KEYS = ("source", "text", "overrides")
FILE_KEYS = tuple(name for name in SearchSpace.model_fields if name not in LOADER_KEYS)
