"""service/space/__init__.py: the package's public names, and how its modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import service.space

PACKAGE = Path(service.space.__file__).parent


def _imports() -> dict[str, set[str]]:
    """module -> the sibling modules it imports (at any depth of the file: function-local imports count)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        siblings: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                siblings.update([node.module] if node.module else [alias.name for alias in node.names])
        graph[path.stem] = siblings
    return graph


def test_space_modules_import_one_way():
    """No cycles: the model never imports the rules that run after it, and nothing imports the loader."""
    graph = _imports()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join(path + (module,))
        if module in done:
            return
        for child in graph.get(module, ()):
            visit(child, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_space_model_modules_import_no_checks():
    """Building a SearchSpace cannot reach user code or the disk: its modules import none of the checks."""
    graph = _imports()
    model_side = {"_model", "_param", "_sections", "_types"}
    checks = {"_check", "_rules", "_catalog_rules", "_trainable", "_data", "_load"}
    for module in model_side:
        assert not graph[module] & checks, module


def test_every_public_name_resolves():
    for name in service.space.__all__:
        assert getattr(service.space, name) is not None, name
