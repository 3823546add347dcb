"""The finite grid of a space, for Optuna's GridSampler."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._errors import Issue

if TYPE_CHECKING:
    from ._model import ParamSpec, SearchSpace

# GridSampler materialises the whole product in memory; beyond this the grid is a mistake, not a plan.
GRID_LIMIT = 1_000_000


def grid_values(name: str, param: "ParamSpec", at: tuple = ()) -> list[Any]:
    """Every value `param` can take: its choices, or low, low + step, ..., high. Issue if infinite."""
    if param.type == "categorical":
        return list(param.choices or ())
    if param.type == "int":
        step = int(param.step or 1)
        count = (param.high - param.low) // step + 1
        if count > GRID_LIMIT:
            raise Issue(
                f"{name!r} alone has {count} grid points",
                "give it a larger step or fewer values",
                at=at,
                value=name,
            )
        return list(range(int(param.low), int(param.high) + 1, step))
    if param.step is None:
        raise Issue(
            f"float parameter {name!r} has no step, so the grid sampler cannot enumerate it",
            f"give {name} a step (e.g. step: {_example_step(param)}), make it categorical, or use another sampler",
            at=at,
            value=name,
        )
    low, high, step = (Decimal(str(x)) for x in (param.low, param.high, param.step))
    count = int((high - low) // step) + 1
    if count > GRID_LIMIT:
        raise Issue(f"{name!r} alone has {count} grid points", "give it a larger step", at=at, value=name)
    # Decimal arithmetic keeps 0.1 + 2 * 0.1 at 0.3 rather than 0.30000000000000004.
    return [float(low + k * step) for k in range(count)]


def grid_search_space(space: "SearchSpace") -> dict[str, list[Any]]:
    """{param: values} for GridSampler; conditional parameters are included (GridSampler needs every name)."""
    return {name: grid_values(name, param, at=("params", name)) for name, param in space.params.items()}


def _example_step(param: "ParamSpec") -> str:
    return f"{(param.high - param.low) / 10:.1g}"  # one significant digit: 0.01 rather than 0.00999
