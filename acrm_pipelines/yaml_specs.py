"""Safe reading of YAML definitions (segments, exports) into pydantic models, with file:line errors.

YAML is parsed with the safe loader, refusing tags, anchors/aliases (no alias bombs), duplicate
mapping keys, files over a size cap and documents nested deeper than MAX_DEPTH. Each document keeps
its node tree so that an error at a pydantic location (``rules.all.2.value``) is reported at the line
of that value in the file.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, Tag, ValidationError

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
# A definition's key (segments, exports, references to them): also an asset key and an API name.
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
# Plain words for the patterns pydantic would otherwise print as a regex.
PATTERN_HINTS = {KEY_PATTERN: "use 1 to 63 lower-case letters a-z, digits and _, starting with a letter"}


@dataclass(frozen=True)
class DefinitionError:
    """One problem in one definition file: where it is and what was expected."""

    file: str
    line: int
    field: str
    message: str
    # Other files the problem involves (the first definition of a duplicate key, the rest of a cycle), so that
    # `acrm validate FILE` reports it for either side.
    related: tuple[str, ...] = field(default=(), compare=False)

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

    def error(self, loc: Sequence[str | int], message: str, related: tuple[str, ...] = ()) -> DefinitionError:
        return DefinitionError(self.file, self.line_of(loc), dotted(loc), message, related)

    def yaml_loc(self, loc: Iterable[str | int], missing_ok: bool = False) -> list[str | int]:
        """`loc` without the parts that are not keys or indexes in the file (pydantic's union tags, `[key]`).

        With `missing_ok` the last part is kept even when absent: it names a required field that is missing.
        """
        parts = list(loc)
        node: yaml.Node | None = self.node
        out: list[str | int] = []
        for i, part in enumerate(parts):
            child = _child(node, part) if node is not None else None
            if child is not None:
                out.append(part)
                node = child
            elif missing_ok and i == len(parts) - 1:
                out.append(part)
        return out


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

    def construct_object(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError) as err:
            # PyYAML's constructors raise plain exceptions on some values; name the value and its line.
            value = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value {value!r}: {err}", node.start_mark
            ) from err


# A plain `2024-03-01` stays the text it is: the definitions parse their dates themselves (with file:line and a
# plain message for `2024-13-45`), while PyYAML's timestamp constructor would raise "month must be in 1..12".
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str)


def _duplicate_keys(node: yaml.Node, file: str) -> list[DefinitionError]:
    errors: list[DefinitionError] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):  # `{[a]: 1}`: PyYAML's constructor would fail on it
                errors.append(
                    DefinitionError(file, key.start_mark.line + 1, "", "a key must be a name, not a list or a mapping")
                )
                continue
            if key.value in seen:
                errors.append(DefinitionError(file, key.start_mark.line + 1, key.value, "duplicate key"))
            seen.add(key.value)
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
            if dupes:
                continue  # the document is not used
            try:
                data = loader.construct_document(node)
            except yaml.constructor.ConstructorError as err:
                # The document is composed: report its value and go on with the next document.
                line, message = plain_yaml_error(err)
                errors.append(DefinitionError(name, line, "", message))
                loader.constructed_objects, loader.recursive_objects = {}, {}
                loader.state_generators, loader.deep_construct = [], False
                continue
            if data is not None:
                docs.append(Document(name, len(docs), data, node))
    except _TooDeep as err:
        message = f"nested deeper than {MAX_DEPTH} levels of mappings and lists (the limit; see docs/segments.md)"
        errors.append(DefinitionError(name, err.mark.line + 1, dotted(err.path), message))
    except yaml.YAMLError as err:
        line, message = plain_yaml_error(err)
        errors.append(DefinitionError(name, line, "", message))
    finally:
        loader.dispose()
    return docs, errors


def _line(mark: yaml.Mark | None) -> int:
    return mark.line + 1 if mark else 1


def plain_yaml_error(err: yaml.YAMLError) -> tuple[int, str]:
    """The line and a plain-words message for PyYAML's scanner and parser errors ("mapping values are not
    allowed here", "while scanning a simple key"), which name the parser's states rather than the mistake."""
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None) or ""
    at_problem = _line(getattr(err, "problem_mark", None) or getattr(err, "context_mark", None))
    at_context = _line(getattr(err, "context_mark", None) or getattr(err, "problem_mark", None))
    found = re.match(r"found character '(.*)' that cannot start any token", problem)
    if problem == "mapping values are not allowed here":
        return at_problem, (
            "invalid YAML: unexpected ':' here; put a text that contains ': ' in quotes (title: 'a: b'), "
            "and indent a key no further than the keys beside it"
        )
    if problem == "could not find expected ':'":
        return at_context, "invalid YAML: expected 'name: value' on this line (the ':' after the name is missing)"
    if found:
        char = found.group(1)
        if char == "\\t":
            return at_problem, "invalid YAML: a tab character; indent with spaces only"
        return at_problem, f"invalid YAML: a value cannot start with {char!r}; put the value in quotes"
    if "quoted scalar" in context and "end of stream" in problem:
        return at_context, "invalid YAML: the quoted text that starts on this line has no closing quote"
    if problem.startswith("found unknown escape character"):
        return at_problem, (
            "invalid YAML: unknown escape sequence in a double-quoted text; use single quotes, or \\\\ for a backslash"
        )
    if context in ("while parsing a flow sequence", "while parsing a flow mapping"):
        opened, closing, what = ("[", "]", "list") if "sequence" in context else ("{", "}", "mapping")
        return at_context, (
            f"invalid YAML: the {what} '{opened}' that starts on this line is not closed with '{closing}', "
            "or its items are not separated by commas"
        )
    if problem.startswith(("expected <block end>", "did not find expected key", "did not find expected '-'")):
        return at_problem, "invalid YAML: this line is not indented like the lines around it (check its spaces)"
    if "end of stream" in problem:
        return at_problem, "invalid YAML: the file ends in the middle of a value"
    return at_problem, f"invalid YAML: {problem}"


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
    """The document as `model`, or the pydantic errors located in the file, in plain words.

    `clean_loc` drops union tags the model knows of; any other part of a location that is not a key or an
    index in the file is dropped too, and the errors of a union's members at one place become one error.
    """
    try:
        return model.model_validate(doc.data), []
    except ValidationError as err:
        failures = err.errors(include_url=False)
    errors: list[DefinitionError] = []
    type_errors: dict[tuple[str | int, ...], list[dict]] = {}
    for e in failures:
        loc = tuple(doc.yaml_loc(clean_loc(e["loc"]), missing_ok=e["type"] == "missing"))
        if e["type"] in TYPE_WORDS:
            type_errors.setdefault(loc, []).append(e)
        else:
            errors.append(doc.error(loc, _message(e, model)))
    for loc, group in type_errors.items():
        # `value: {a: 1}` fails each member of `bool | int | float | str | list`: one error listing them.
        words = list(dict.fromkeys(TYPE_WORDS[e["type"]] for e in group))
        if "a whole number" in words and "a number" in words:
            words.remove("a whole number")
        expected = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        errors.append(doc.error(loc, f"expected {expected}, got {_shown(group[0].get('input'))}"))
    return None, errors


# Pydantic's type errors ("Input should be a valid integer") as what the YAML should have held.
TYPE_WORDS = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "text",
    "list_type": "a list [...]",
    "dict_type": "a mapping {name: value}",
    "model_type": "a mapping {name: value}",
    "model_attributes_type": "a mapping {name: value}",
}
# Operators as people type them, for the did-you-mean of an unknown operator.
OPERATOR_TYPOS = {"==": "=", "=>": ">=", "=<": "<=", "<>": "!=", "!==": "!=", "≥": ">=", "≤": "<=", "≠": "!="}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def suggest(word: Any, choices: Iterable[str]) -> list[str]:
    """Likely meant: a known typo of an operator, the same characters reordered, or a close spelling."""
    if not isinstance(word, str):
        return []
    choices = list(choices)
    typo = OPERATOR_TYPOS.get(word.strip())
    if typo in choices:
        return [typo]
    folded = word.strip().lower().replace(" ", "_")
    same = [c for c in choices if c.lower() == folded or sorted(c) == sorted(word)]
    return same or difflib.get_close_matches(word, choices, n=3)


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """` (did you mean: x, y)`, or nothing when nothing is close."""
    close = suggest(word, choices)
    return f" (did you mean: {', '.join(close)})" if close else ""


def _message(error: dict, model: type[BaseModel]) -> str:
    kind, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(model, error["loc"][:-1])
        name = error["loc"][-1]
        hint = did_you_mean(name, allowed)
        if not hint and allowed:
            hint = f" (allowed here: {', '.join(allowed)})"
        return f"unknown field{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        choices = re.findall(r"'((?:[^'\\]|\\.)*)'", str(ctx.get("expected", "")))
        return f"expected one of {', '.join(choices)}, got {_shown(given)}{did_you_mean(given, choices)}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_HINTS:
        return f"{_shown(given)} is not allowed: {PATTERN_HINTS[ctx['pattern']]}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"give at least {n} item{'s' if n != 1 else ''}"
    if kind == "finite_number":
        return "expected a finite number (not .inf or .nan)"
    return str(error["msg"]).removeprefix("Value error, ")


def _union_members(tp: Any) -> list[tuple[str | None, Any]]:
    """(tag, type) of each member of a (possibly Annotated, nested, Optional) union; one member otherwise."""
    tag = next((m.tag for m in getattr(tp, "__metadata__", ()) if isinstance(m, Tag)), None)
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _union_members(arg) if m[1] is not type(None)]
    return [(tag, tp)]


def _field_type(tp: Any, part: str | int) -> Any:
    """The type found at `part` (a field, a list index, a dict key or a union tag) of `tp`, or None."""
    members = _union_members(tp)
    for tag, member in members:
        if tag is not None and tag == part:
            return member
    for _, member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            for name, info in member.model_fields.items():
                if part in (name, info.alias):
                    return _hints(member).get(name, info.annotation)
        origin = typing.get_origin(member)
        if origin is list and isinstance(part, int):
            return typing.get_args(member)[0]
        if origin is dict and isinstance(part, str):
            return typing.get_args(member)[1]
    for _, member in members:
        # A union discriminated by a field (`type: csv`): pydantic's tag is that field's value.
        if isinstance(member, type) and issubclass(member, BaseModel):
            literals = (typing.get_args(t) for t in _hints(member).values() if typing.get_origin(t) is Literal)
            if any(part in values for values in literals):
                return member
    return None


@functools.cache
def _hints(model: type[BaseModel]) -> dict[str, Any]:
    """A model's field types with forward references resolved (model_fields keeps `list[Condition]` as text)."""
    try:
        return typing.get_type_hints(model, include_extras=True)
    except (NameError, TypeError):
        return {}


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names allowed in the mapping at pydantic's location `loc` (for a did-you-mean)."""
    tp: Any = model
    for part in loc:
        tp = _field_type(tp, part)
        if tp is None:
            return []
    models = [m for _, m in _union_members(tp) if isinstance(m, type) and issubclass(m, BaseModel)]
    return [info.alias or name for m in models[:1] for name, info in m.model_fields.items()]


@dataclass
class DefinitionFiles(Generic[M]):
    """What a set of definition files holds: the valid definitions by key, the documents that failed
    (by key when they have one), and every error."""

    found: dict[str, tuple[M, Document]] = field(default_factory=dict)
    invalid: list[Document] = field(default_factory=list)
    invalid_keys: dict[str, Document] = field(default_factory=dict)
    errors: list[DefinitionError] = field(default_factory=list)


def read_definition_files(
    paths: Sequence[Path],
    model: type[M],
    kind: str,
    clean_loc: Callable[[Sequence[str | int]], Sequence[str | int]] = tuple,
    root: Path | None = None,
) -> DefinitionFiles[M]:
    """Every `model` (keyed by its `key`) in the YAML files or folders given, the documents that failed, and
    every error met. A failed definition's key still counts: a duplicate of it is reported, and segments
    built from it are not told it does not exist."""
    out: DefinitionFiles[M] = DefinitionFiles()
    seen: dict[str, Document] = {}
    for path in yaml_files(paths):
        display = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        docs, read_errors = read_documents(path, display)
        out.errors += read_errors
        for doc in docs:
            if not isinstance(doc.data, dict):
                out.errors.append(doc.error([], f"a {kind} definition must be a mapping with a key"))
                continue
            item, model_errors = parse_model(model, doc, clean_loc)
            out.errors += model_errors
            key = item.key if item is not None else doc.data.get("key")  # type: ignore[attr-defined]
            if isinstance(key, str) and key in seen:
                first = seen[key]
                where = f"{first.file}:{first.line_of(['key'])}"
                message = f"duplicate {kind} key {key!r} (first defined in {where})"
                out.errors.append(doc.error(["key"], message, related=(first.file,)))
                continue
            if isinstance(key, str):
                seen[key] = doc
            if item is not None:
                out.found[key] = (item, doc)
            else:
                out.invalid.append(doc)
                if isinstance(key, str):
                    out.invalid_keys[key] = doc
    return out


def read_definitions(
    paths: Sequence[Path],
    model: type[M],
    kind: str,
    clean_loc: Callable[[Sequence[str | int]], Sequence[str | int]] = tuple,
    root: Path | None = None,
) -> tuple[dict[str, tuple[M, Document]], list[DefinitionError]]:
    """Every `model` (keyed by its `key`) in the YAML files or folders given, and every error met."""
    files = read_definition_files(paths, model, kind, clean_loc, root)
    return files.found, files.errors
