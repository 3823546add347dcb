"""YAML text to plain Python data that remembers where every key came from.

We compose nodes with PyYAML's safe loader and build the data ourselves instead of calling
`yaml.safe_load`, for three reasons: every key path gets its line (error messages point at it), duplicate
keys are an error rather than "last one wins", and alias expansion is counted, so a billion-laughs document
is rejected after MAX_NODES nodes instead of exhausting memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ._errors import NO_VALUE, SpaceError, show

MAX_BYTES = 1024 * 1024  # a space is a page of YAML; anything near this size is a mistake
MAX_NODES = 20_000  # nodes after expanding aliases; real spaces have a few hundred
MAX_DEPTH = 32  # nesting; real spaces nest four levels deep

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same nodes and marks, faster
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Location:
    """Where a key path was written: a line of the file, or a `--set` override."""

    line: Optional[int] = None
    origin: Optional[str] = None  # "--set KEY=VALUE" for overridden values


Path = tuple  # a key path: ("params", "lr", "low"), ("params", "bs", "choices", 2)


class Locations:
    """Key path → Location; `find` answers with the deepest path that exists."""

    def __init__(self) -> None:
        self._by_path: dict[Path, Location] = {}

    def set(self, path: Path, where: Location) -> None:
        self._by_path[tuple(path)] = where

    def replace_subtree(self, path: Path, where: Location, sub_paths: list[Path]) -> None:
        """An override replaced the value at `path`: forget what was under it, point it all at `where`."""
        path = tuple(path)
        for known in [p for p in self._by_path if p[: len(path)] == path]:
            del self._by_path[known]
        for i in range(1, len(path) + 1):
            self._by_path.setdefault(path[:i], where)
        self._by_path[path] = where
        for sub in sub_paths:
            self._by_path[path + tuple(sub)] = where

    def paths(self) -> list[Path]:
        return list(self._by_path)

    def find(self, path: Path) -> Location:
        path = tuple(path)
        for end in range(len(path), 0, -1):
            where = self._by_path.get(path[:end])
            if where is not None:
                return where
        return Location()


def compose(text: str, file: str, origin: Optional[str] = None) -> tuple[Any, Locations]:
    """Parse one YAML document of `text` into plain data and the location of each key path."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise SpaceError(
            f"is larger than {MAX_BYTES // 1024} KiB",
            file=file,
            origin=origin,
            hint="a space file is a page of YAML; check that this is the right file",
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file, origin) from None
    except yaml.YAMLError as exc:
        raise SpaceError(f"is not valid YAML: {exc}", file=file, origin=origin, hint="fix the YAML syntax") from None
    finally:
        loader.dispose()
    builder = _Builder(file, origin)
    if node is None:
        return None, builder.locations
    return builder.build(node, (), 0), builder.locations


def _syntax_error(exc: yaml.MarkedYAMLError, file: str, origin: Optional[str]) -> SpaceError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None and origin is None else None
    problem = exc.problem or "invalid YAML"
    if "expected a single document" in (exc.context or ""):
        return SpaceError(
            "holds more than one YAML document",
            file=file,
            line=line,
            origin=origin,
            hint="a space file is one document: remove the second '---' and what follows",
        )
    context = f" ({exc.context})" if exc.context else ""
    return SpaceError(
        f"YAML syntax error: {problem}{context}",
        file=file,
        line=line,
        origin=origin,
        hint="fix the YAML at that line (indentation, a missing ':' or an unclosed quote or bracket)",
    )


class _Builder:
    """Turns composed nodes into dicts, lists and scalars, counting every node visited."""

    def __init__(self, file: str, origin: Optional[str]) -> None:
        self.file = file
        self.origin = origin
        self.locations = Locations()
        self.constructor = SafeConstructor()
        self.visited = 0
        self.active: set[int] = set()  # node ids on the current path, to catch recursive aliases

    def _error(self, node: Node, path: Path, message: str, hint: str, value: Any = NO_VALUE) -> SpaceError:
        return SpaceError(
            message,
            file=self.file,
            line=None if self.origin else node.start_mark.line + 1,
            field=dotted(path),
            value=value,
            hint=hint,
            origin=self.origin,
        )

    def build(self, node: Node, path: Path, depth: int) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise self._error(
                node,
                path,
                f"expands to more than {MAX_NODES} YAML nodes (through aliases)",
                "a space needs far fewer; remove the alias chains",
            )
        if depth > MAX_DEPTH:
            raise self._error(node, path, f"nests deeper than {MAX_DEPTH} levels", "flatten the structure")
        if id(node) in self.active:
            raise self._error(node, path, "is an alias that contains itself", "remove the recursive alias")
        if isinstance(node, ScalarNode):
            try:
                return self.constructor.construct_object(node)
            except (ConstructorError, ValueError) as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                raise self._error(
                    node, path, f"cannot read {node.value!r}: {problem}", "use a plain number, text, true/false or null"
                ) from None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                self._check_tag(node, path, _SEQ_TAG)
                items = []
                for index, child in enumerate(node.value):
                    self._locate(path + (index,), child)
                    items.append(self.build(child, path + (index,), depth + 1))
                return items
            if isinstance(node, MappingNode):
                self._check_tag(node, path, _MAP_TAG)
                return self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))
        raise self._error(node, path, f"unsupported YAML node {type(node).__name__}", "use plain YAML")

    def _check_tag(self, node: Node, path: Path, expected: str) -> None:
        if node.tag != expected:
            raise self._error(node, path, f"unsupported YAML tag {node.tag!r}", "remove the tag")

    def _locate(self, path: Path, node: Node) -> None:
        if self.origin:
            self.locations.set(path, Location(None, self.origin))
        else:
            self.locations.set(path, Location(node.start_mark.line + 1))

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict:
        explicit: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_pairs(value_node, path))
            else:
                explicit.append((key_node, value_node))
        result: dict = {}
        first_line: dict = {}
        explicit_keys = set()
        for key_node, value_node in explicit:
            key = self._key(key_node, path)
            if key in first_line:
                raise self._error(
                    key_node,
                    path + (key,),
                    f"duplicate key {key!r} (first written at line {first_line[key]})",
                    "keep one of them",
                    value=key,
                )
            first_line[key] = key_node.start_mark.line + 1
            explicit_keys.add(key)
        # Merged keys (`<<: *defaults`) come first and lose to explicit ones, as in YAML 1.1.
        for key_node, value_node in merged + explicit:
            key = self._key(key_node, path)
            if key in result and key not in explicit_keys:
                continue  # an earlier merge source wins over a later one
            self._locate(path + (key,), key_node)
            result[key] = self.build(value_node, path + (key,), depth + 1)
        return result

    def _merge_pairs(self, value_node: Node, path: Path) -> list[tuple[Node, Node]]:
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        pairs: list[tuple[Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                raise self._error(value_node, path, "'<<' merges only mappings", "merge an anchored mapping: <<: *name")
            self.visited += len(source.value)
            pairs.extend(p for p in source.value if p[0].tag != _MERGE_TAG)
        return pairs

    def _key(self, key_node: Node, path: Path) -> str:
        if not isinstance(key_node, ScalarNode):
            raise self._error(key_node, path, "has a list or mapping as a key", "keys are plain names")
        key = self.constructor.construct_object(key_node)
        if not isinstance(key, str):
            raise self._error(
                key_node,
                path + (key_node.value,),
                f"key {key_node.value!r} is read by YAML as {show(key)} ({type(key).__name__}), not as a name",
                f"quote it: '{key_node.value}'",
                value=key,
            )
        return key


def dotted(path: Path) -> str:
    """("params", "lr", "low") → "params.lr.low"."""
    return ".".join(str(p) for p in path)
