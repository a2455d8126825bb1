"""YAML to plain JSON-like data, remembering where every node came from.

PyYAML's constructors throw positions away and silently keep the last of two
equal keys. We compose the node graph instead and build the data ourselves,
recording a 1-based (line, col) for every path: the key's position for a
mapping entry, the item's position for a sequence item. Every later error
(schema, semantic) is reported through that map.

Paths are tuples of `str` (mapping keys) and `int` (sequence indices);
`format_path(("steps", 3, "toxic"))` gives `steps[3].toxic`. Mapping keys
are stringified (`weights: {3: 0}` gives key "3") so the data is valid input
for jsonschema.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import yaml

__all__ = ["PlanIssue", "PlanError", "Document", "PathT", "format_path", "load_yaml"]

PathT = tuple  # tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class PlanIssue:
    """One thing wrong with a plan, located in its file."""

    file: str
    line: int | None
    col: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.col if self.col is not None else 1}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def sort_key(self) -> tuple:
        return (self.file, self.line or 0, self.col or 0, self.path, self.message)


class PlanError(Exception):
    """The plan cannot run; `errors` lists every problem found, in file order.

    Callers print each issue on its own line and exit 2; nothing of the run
    has started when this is raised."""

    def __init__(self, errors: Iterable[PlanIssue]) -> None:
        self.errors: list[PlanIssue] = sorted(errors, key=PlanIssue.sort_key)
        super().__init__("\n".join(str(e) for e in self.errors))


def format_path(parts: Sequence[str | int]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


@dataclass(slots=True)
class Document:
    """Composed YAML: `data` (dicts with str keys, lists, scalars) plus positions."""

    file: str
    data: Any
    positions: dict[PathT, tuple[int, int]] = field(default_factory=dict)

    def pos(self, path: Sequence[str | int]) -> tuple[int, int]:
        """Position of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def issue(self, path: Sequence[str | int], message: str) -> PlanIssue:
        line, col = self.pos(path)
        return PlanIssue(self.file, line, col, format_path(path), message)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.doc = Document(file, None)
        self.issues: list[PlanIssue] = []
        self._ctor = yaml.SafeLoader("")

    def scalar(self, node: yaml.ScalarNode) -> Any:
        value = self._ctor.construct_object(node, deep=True)
        if isinstance(value, (datetime.date, datetime.datetime, bytes)):
            return node.value  # keep JSON-only scalar types; the text is what was meant
        return value

    def build(self, node: yaml.Node, path: PathT, active: tuple[int, ...] = ()) -> Any:
        if id(node) in active:  # an alias pointing into its own ancestor
            self.issues.append(self.doc.issue(path, "recursive YAML alias"))
            return None
        active = active + (id(node),)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self.doc.positions.setdefault(path + (i,), _mark(item))
                out.append(self.build(item, path + (i,), active))
            return out
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            first_seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    line, col = _mark(key_node)
                    self.issues.append(PlanIssue(self.file, line, col, format_path(path),
                                                 "mapping keys must be plain scalars"))
                    continue
                if key_node.tag == "tag:yaml.org,2002:merge":
                    line, col = _mark(key_node)
                    self.issues.append(PlanIssue(self.file, line, col, format_path(path),
                                                 "YAML merge keys (<<) are not supported"))
                    continue
                raw = self.scalar(key_node)
                key = raw if isinstance(raw, str) else (
                    str(raw).lower() if isinstance(raw, bool) or raw is None else str(raw))
                kpath = path + (key,)
                line, col = _mark(key_node)
                if key in first_seen:
                    self.issues.append(PlanIssue(
                        self.file, line, col, format_path(kpath),
                        f"duplicate key '{key}' (first at line {first_seen[key]})"))
                    # keep the first one: what the reader saw first stays authoritative
                    continue
                first_seen[key] = line
                self.doc.positions[kpath] = (line, col)
                result[key] = self.build(value_node, kpath, active)
            return result
        raise AssertionError(f"unknown YAML node {node!r}")  # pragma: no cover


def load_yaml(text: str, file: str) -> tuple[Document | None, list[PlanIssue]]:
    """Parse one YAML document. Returns the document (None when the text is not
    YAML at all) and the issues found while reading it (syntax errors,
    duplicate keys, unsupported constructs)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.problem:
            ctx = exc.context
            cm = exc.context_mark
            if cm is not None and mark is not None and (cm.line, cm.column) != (mark.line, mark.column):
                ctx += f" (opened at {cm.line + 1}:{cm.column + 1})"
            problem = f"{ctx}: {exc.problem}"
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return None, [PlanIssue(file, line, col, "", f"YAML syntax error: {problem}")]
    except yaml.YAMLError as exc:
        return None, [PlanIssue(file, None, None, "", f"YAML error: {exc}")]
    if node is None:
        return Document(file, None, {(): (1, 1)}), []
    b = _Builder(file)
    b.doc.positions[()] = _mark(node)
    try:
        b.doc.data = b.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return None, b.issues + [PlanIssue(file, line, col, "", f"YAML error: {exc.problem}")]
    return b.doc, b.issues
