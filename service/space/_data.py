"""The data check: are the files a space names there and readable? It touches the disk, so it runs last and
only when asked (a space submitted to a cluster names the cluster's files, checked where the driver runs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

from trainables import DataError

from ._errors import Issue
from ._model import SearchSpace


def data_issues(space: SearchSpace, *, builtin: Optional[str] = None) -> Iterator[Issue]:
    """Ask the trainables' data code (`trainables.check_data`) about the files, for the built-in trainable
    `builtin` when there is one; its DataError becomes an Issue."""
    from trainables import check_data  # imports numpy: only when a space is checked, not for `hpsearch --help`

    try:
        check_data(space.data.model_dump(), trainable=builtin)
    except DataError as exc:
        yield Issue(
            str(exc).rstrip("."),
            "fix the data: settings or the files they point at",
            at=("data",),
            value={k: v for k, v in space.data.model_dump().items() if v is not None},
        )
