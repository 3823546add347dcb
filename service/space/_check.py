"""The checks that run on a built `SearchSpace`: rules between sections, the trainable, its catalog, the data.

The model (`_model.py`) validates each section on its own and never imports user code or reads files; these
checks run after it, from `parse_space` / `load_space`, in a fixed order: the space's own rules first, then
the trainable (which may import a user's module), then its catalog, then the data files (the disk) last.
"""

from __future__ import annotations

from typing import Optional

from . import _rules
from ._catalog_rules import catalog_issues
from ._data import data_issues
from ._errors import Issue
from ._model import SearchSpace
from ._trainable import trainable_issues


def check_space(space: SearchSpace, *, base_dir: Optional[str] = None, check_data: bool = True) -> list[Issue]:
    """Every broken rule of `space`, each an Issue whose `at` is the key path from the top of the file."""
    issues: list[Issue] = []
    for rule in (
        _rules.objectives,
        _rules.reserved_names,
        _rules.searched_or_fixed,
        _rules.conditions,
        _rules.scheduler,
        _rules.sampler,
    ):
        issues.extend(rule(space))
    trainable = list(trainable_issues(space.trainable, base_dir=base_dir))
    issues.extend(trainable)
    if space.trainable_spec is not None:
        issues.extend(catalog_issues(space, space.trainable_spec))
    if check_data:
        issues.extend(data_issues(space))
    return issues
