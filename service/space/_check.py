"""The checks that run on a built `SearchSpace`: rules between sections, the trainable, its catalog, the data.

The model (`_model.py`) validates each section on its own and never imports user code or reads files; these
checks run after it, from `parse_space` / `load_space`, in a fixed order: the space's own rules first, then
the trainable (which may import a user's module), then its catalog, then MLflow's key rules, then the data
files (the disk) last.

When the model refused parts of the file, the loader builds the space without them (stand-ins or defaults
in their place) and names them in `broken`; a check that reads a broken part is skipped, so that every
error reported is one the user wrote, not one a stand-in caused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from . import _rules
from ._catalog_rules import catalog_issues
from ._data import data_issues
from ._errors import Issue
from ._mlflow_keys import mlflow_issues
from ._model import SearchSpace
from ._trainable import TrainablePolicy, trainable_issues


def check_space(
    space: SearchSpace,
    *,
    base_dir: Optional[str] = None,
    check_data: bool = True,
    trainables: Optional[TrainablePolicy] = None,
    broken: Iterable[tuple] = (),
) -> list[Issue]:
    """Every broken rule of `space`, each an Issue whose `at` is the key path from the top of the file.

    `trainables` is the policy for user trainables (default: local, which imports the module to check it).

    `broken` names the parts the model refused, as key paths: ("budget",) for a section or top-level key,
    ("params", "lr") for one parameter.
    """
    keys = {part[0] for part in broken if len(part) == 1}
    lost_params = frozenset(part[1] for part in broken if len(part) == 2 and part[0] == "params")

    def readable(*names: str) -> bool:
        return not keys.intersection(names)

    issues: list[Issue] = []
    if readable("metric", "mode"):
        issues.extend(_rules.objectives(space))
    issues.extend(_rules.reserved_names(space))
    issues.extend(_rules.searched_or_fixed(space))
    issues.extend(_rules.conditions(space, unknown=lost_params))
    if readable("metric", "scheduler", "budget"):
        issues.extend(_rules.scheduler(space))
    if readable("metric", "sampler"):
        issues.extend(_rules.sampler(space, whole=not lost_params))
    builtin = None
    if readable("trainable"):
        found = list(trainable_issues(space.trainable, base_dir=base_dir, policy=trainables))
        issues.extend(found)
        spec = space.trainable_spec
        if spec is not None and not found:
            parts = [part for part in ("params", "fixed", "metric", "data") if readable(part)]
            catalog = list(catalog_issues(space, spec, parts=parts))
            issues.extend(catalog)
            # the data code checks the data against the trainable too; once the catalog said why they do
            # not fit, it checks only the files
            if not any(issue.at[:1] == ("data",) for issue in catalog):
                builtin = spec.name
    # after the catalog: for a built-in trainable its "not a parameter ..., did you mean" says more
    issues.extend(mlflow_issues(space, metric=readable("metric")))
    if check_data and readable("data", "trainable"):
        issues.extend(data_issues(space, builtin=builtin))
    return issues
