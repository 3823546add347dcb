"""`when:` conditions: value equality as YAML means it, whether a condition holds, dependency order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def value_key(value: Any) -> tuple:
    """A key under which YAML-equal values are equal: 1 == 1.0, but true != 1 and '1' != 1."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    return (type(value).__name__, value)


def conditions_hold(when: Mapping[str, tuple], sampled: Mapping[str, Any]) -> bool:
    """True when every parent was sampled and took one of the listed values."""
    for parent, allowed in when.items():
        if parent not in sampled:
            return False
        if value_key(sampled[parent]) not in {value_key(v) for v in allowed}:
            return False
    return True


def find_cycle(parents: Mapping[str, tuple[str, ...]]) -> list[str]:
    """A cycle among conditions as [a, b, a] (a depends on b depends on a), or [] when there is none.

    `parents` maps each parameter to the parameters its `when:` names (unknown names are ignored).
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for start in parents:
        if state.get(start):
            continue
        path: list[str] = [start]
        iterators = [iter(parents[start])]
        state[start] = 1
        while path:
            step = next(iterators[-1], None)
            if step is None:
                state[path.pop()] = 2
                iterators.pop()
                continue
            if step not in parents:
                continue
            if state.get(step) == 1:
                return path[path.index(step):] + [step]
            if not state.get(step):
                state[step] = 1
                path.append(step)
                iterators.append(iter(parents[step]))
    return []


def dependency_order(parents: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Parameters ordered so every parent comes before its children, otherwise in file order.

    Assumes no cycles (validation rejects them).
    """
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(parents)
    while remaining:
        for name in remaining:
            if all(p in placed or p not in parents for p in parents[name]):
                order.append(name)
                placed.add(name)
                remaining.remove(name)
                break
        else:  # a cycle; validation reports it, here keep going in file order
            order.extend(remaining)
            break
    return order
