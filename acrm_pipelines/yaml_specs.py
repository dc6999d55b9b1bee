"""Safe reading of YAML definitions (segments, exports) into pydantic models, with file:line errors.

YAML is parsed with the safe loader, refusing tags, anchors/aliases (no alias bombs), duplicate
mapping keys, files over a size cap and documents nested deeper than MAX_DEPTH. Each document keeps
its node tree so that an error at a pydantic location (``rules.all.2.value``) is reported at the line
of that value in the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

MAX_FILE_BYTES = 1_000_000
# Levels of YAML nodes (mappings, lists and the scalars in them; the document is level 1). The example
# definitions use at most 6 and a rule three groups deep about 10: an all/any group takes two levels (its
# mapping and its list), a not one. Deeper documents are refused while the file is read, before PyYAML's
# composer, pydantic or the rule compiler recurse into them (each hits Python's recursion limit at a few
# hundred levels, with no file name).
MAX_DEPTH = 32
SUFFIXES = (".yaml", ".yml")
M = TypeVar("M", bound=BaseModel)
CORE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}


@dataclass(frozen=True)
class DefinitionError:
    """One problem in one definition file: where it is and what was expected."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class DefinitionErrors(Exception):
    """Every error found in a set of definition files, reported together."""

    def __init__(self, errors: Sequence[DefinitionError]):
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.field))
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass
class Document:
    """One YAML document: its data, its node tree (for line numbers) and where it came from."""

    file: str
    index: int
    data: Any
    node: yaml.Node

    def line_of(self, loc: Iterable[str | int]) -> int:
        """1-based line of the deepest node reachable along `loc` (pydantic's error location)."""
        node = self.node
        for part in loc:
            child = _child(node, part)
            if child is None:
                continue  # a union tag or a model name in the location, not a YAML key
            node = child
        return node.start_mark.line + 1

    def error(self, loc: Sequence[str | int], message: str) -> DefinitionError:
        return DefinitionError(self.file, self.line_of(loc), dotted(loc), message)


def dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None


class _TooDeep(yaml.YAMLError):
    """A node at level MAX_DEPTH + 1: where it starts and the path of keys and indexes to it."""

    def __init__(self, path: list[str | int], mark: yaml.Mark):
        super().__init__(f"nested deeper than {MAX_DEPTH} levels")
        self.path, self.mark = path, mark


class _StrictLoader(yaml.SafeLoader):
    """The safe loader without anchors, aliases, tags beyond YAML's plain scalars, or deep nesting."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._path: list[str | int] = []  # keys and list indexes down to the node being composed
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "anchors and aliases are not allowed in definitions", event.start_mark
            )
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise yaml.constructor.ConstructorError(
                None, None, "anchors and aliases are not allowed in definitions", event.start_mark
            )
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in CORE_TAGS:
            raise yaml.constructor.ConstructorError(None, None, f"tag {tag} is not allowed", event.start_mark)
        # PyYAML composes a mapping's key with index None and its value with the key node as index.
        part = index.value if isinstance(index, yaml.ScalarNode) else index if isinstance(index, int) else None
        if part is not None:
            self._path.append(part)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(list(self._path), event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if part is not None:
                self._path.pop()


def _duplicate_keys(node: yaml.Node, file: str) -> list[DefinitionError]:
    errors: list[DefinitionError] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = getattr(key, "value", None)
            if name in seen:
                errors.append(DefinitionError(file, key.start_mark.line + 1, str(name), "duplicate key"))
            seen.add(str(name))
            errors += _duplicate_keys(value, file)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            errors += _duplicate_keys(item, file)
    return errors


def read_documents(path: Path, display: str | None = None) -> tuple[list[Document], list[DefinitionError]]:
    """Every document of one YAML file; errors instead of exceptions so that all files are checked."""
    name = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return [], [DefinitionError(name, 1, "", f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}")]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [], [DefinitionError(name, 1, "", f"cannot read the file: {err}")]
    loader = _StrictLoader(text)
    docs: list[Document] = []
    errors: list[DefinitionError] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            dupes = _duplicate_keys(node, name)
            errors += dupes
            data = loader.construct_document(node)
            if data is None:
                continue
            if not dupes:
                docs.append(Document(name, len(docs), data, node))
    except _TooDeep as err:
        message = f"nested deeper than {MAX_DEPTH} levels of mappings and lists (the limit; see docs/segments.md)"
        errors.append(DefinitionError(name, err.mark.line + 1, dotted(err.path), message))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(err, "problem", None) or str(err)
        errors.append(DefinitionError(name, line, "", f"invalid YAML: {problem}"))
    finally:
        loader.dispose()
    return docs, errors


def yaml_files(paths: Sequence[Path]) -> list[Path]:
    """YAML files named, or found (recursively, sorted) in the folders named."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


def parse_model(
    model: type[M], doc: Document, clean_loc: Callable[[Sequence[str | int]], Sequence[str | int]] = tuple
) -> tuple[M | None, list[DefinitionError]]:
    """The document as `model`, or the pydantic errors located in the file (`clean_loc` drops union tags)."""
    try:
        return model.model_validate(doc.data), []
    except ValidationError as err:
        return None, [doc.error(clean_loc(e["loc"]), _message(e)) for e in err.errors(include_url=False)]


def _message(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = error["msg"]
    return msg.removeprefix("Value error, ")


def read_definitions(
    paths: Sequence[Path],
    model: type[M],
    kind: str,
    clean_loc: Callable[[Sequence[str | int]], Sequence[str | int]] = tuple,
    root: Path | None = None,
) -> tuple[dict[str, tuple[M, Document]], list[DefinitionError]]:
    """Every `model` (keyed by its `key`) in the YAML files or folders given, and every error met."""
    errors: list[DefinitionError] = []
    found: dict[str, tuple[M, Document]] = {}
    for path in yaml_files(paths):
        display = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        docs, read_errors = read_documents(path, display)
        errors += read_errors
        for doc in docs:
            if not isinstance(doc.data, dict):
                errors.append(doc.error([], f"a {kind} definition must be a mapping with a key"))
                continue
            item, model_errors = parse_model(model, doc, clean_loc)
            errors += model_errors
            if item is None:
                continue
            key = item.key  # type: ignore[attr-defined] - every definition model has a key
            if key in found:
                first = found[key][1]
                where = f"{first.file}:{first.line_of(['key'])}"
                errors.append(doc.error(["key"], f"duplicate {kind} key {key!r} (first defined in {where})"))
                continue
            found[key] = (item, doc)
    return found, errors
