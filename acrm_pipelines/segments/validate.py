"""Load and validate every segment definition; all errors at once, each with file, line and field."""

from __future__ import annotations

import calendar
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from acrm_pipelines.segments.catalogue import Catalogue, Kind, load_catalogue
from acrm_pipelines.segments.dates import is_relative, month_day, parse_date
from acrm_pipelines.segments.spec import (
    MAX_SPAN,
    AllGroup,
    AnyGroup,
    BehaviourCondition,
    Condition,
    FieldCondition,
    NotGroup,
    Segment,
    SetSource,
    Split,
)
from acrm_pipelines.settings import REPO_ROOT, Settings
from acrm_pipelines.yaml_specs import (
    DefinitionError,
    DefinitionErrors,
    Document,
    did_you_mean,
    read_definition_files,
)

# Discriminator tags pydantic puts into error locations of a condition; not YAML keys.
CONDITION_TAGS = {"all", "any", "not", "field", "behaviour"}
OPS_BY_KIND: dict[str, set[str]] = {
    "text": {"=", "!=", "<", "<=", ">", ">=", "between", "in", "not_in", "is_null", "is_not_null", "contains"},
    "number": {"=", "!=", "<", "<=", ">", ">=", "between", "in", "not_in", "is_null", "is_not_null"},
    "date": {"=", "!=", "<", "<=", ">", ">=", "between", "in", "not_in", "is_null", "is_not_null"},
    "boolean": {"=", "!=", "is_null", "is_not_null"},
    "list": {"has_tag", "contains", "is_null", "is_not_null"},
}
OPS_BY_KIND["timestamp"] = OPS_BY_KIND["date"]
DATE_LIMITS = ", ".join(f"{MAX_SPAN[unit]:,}{unit}" for unit in "dwMy")  # relative dates have no hours
ISO_SHAPE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
# Parts of a definition that failed as a whole, checked one by one so that their other errors still show.
CONDITION: TypeAdapter = TypeAdapter(Condition)
SET_SOURCE = TypeAdapter(SetSource)
SPLIT = TypeAdapter(Split)
KEYS = TypeAdapter(list[str])


@dataclass
class Definition:
    segment: Segment
    doc: Document

    @property
    def file(self) -> str:
        return self.doc.file


@dataclass
class SegmentSet:
    """Valid segments by key, in dependency order (inputs before the segments built from them)."""

    definitions: dict[str, Definition] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Segment:
        return self.definitions[key].segment

    def __contains__(self, key: str) -> bool:
        return key in self.definitions

    def __len__(self) -> int:
        return len(self.definitions)

    def levels(self) -> list[list[str]]:
        """Keys grouped by depth: level 0 has no inputs, level k needs only lower levels."""
        depth: dict[str, int] = {}
        for key in self.order:
            refs = self[key].refs
            depth[key] = 1 + max((depth[r] for r in refs), default=-1)
        out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for key in self.order:
            out[depth[key]].append(key)
        return out

    def closure(self, keys: Sequence[str]) -> list[str]:
        """`keys` and every segment they are built from, in dependency order."""
        needed: set[str] = set()
        stack = list(keys)
        while stack:
            key = stack.pop()
            if key not in needed:
                needed.add(key)
                stack += self[key].refs
        return [k for k in self.order if k in needed]


def clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    """Drop pydantic's union tags, which follow `rules`, `not` or a list index inside all/any."""
    out: list[str | int] = []
    tag_next = False
    for part in loc:
        if tag_next and part in CONDITION_TAGS:
            tag_next = False
            continue
        out.append(part)
        tag_next = part in ("rules", "not") or (isinstance(part, int) and len(out) > 1 and out[-2] in ("all", "any"))
    return out


def _too_far(values: list) -> str | None:
    """A relative date further than 100 years from the as-of date (it would overflow the calendar)."""
    for v in values:
        if is_relative(v) and v != "today" and abs(int(v[:-1])) > MAX_SPAN[v[-1]]:
            return f"relative date {v!r} is more than 100 years from the as-of date (the limits: {DATE_LIMITS})"
    return None


def _not_a_day(value: Any) -> str | None:
    """Why a YYYY-MM-DD-shaped value is not a day of the calendar (`2024-13-45`, `2024-02-30`), or None."""
    match = ISO_SHAPE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return None
    year, month, day = (int(g) for g in match.groups())
    if not 1 <= month <= 12:
        return f"{value!r} is not a date: there is no month {month} (months are 01 to 12)"
    last = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last:
        return f"{value!r} is not a date: {calendar.month_name[month]} {year} has {last} days"
    return f"{value!r} is not a date: write it as YYYY-MM-DD ({year:04d}-{month:02d}-{day:02d})"


def _value_errors(cond: FieldCondition, kind: Kind) -> str | None:
    """What is wrong with the value for a field of this kind, or None."""
    if cond.op in ("is_null", "is_not_null"):
        return None
    values = cond.value if isinstance(cond.value, list) else [cond.value]
    if kind == "any":
        # A custom_* field of unknown type may turn out to be a date when the segment is evaluated.
        return _too_far(values)
    if cond.ignore_year:
        if kind not in ("date", "timestamp"):
            return f"ignore_year works on date fields; {cond.field} is {kind}"
        bad = [v for v in values if month_day(v) is None]
        return f"expected MM-DD or a relative date like +3d, got {bad[0]!r}" if bad else _too_far(values)
    if kind in ("date", "timestamp"):
        bad = [v for v in values if parse_date(v) is None]
        if bad and (why := _not_a_day(bad[0])):
            return why
        return (
            f"expected a date YYYY-MM-DD or a relative date (today, -90d, +3d, -2w, -3M, -1y), got {bad[0]!r}"
            if bad
            else _too_far(values)
        )
    if kind == "number":
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int | float)]
        return f"expected a number for {cond.field}, got {bad[0]!r}" if bad else None
    if kind == "boolean":
        bad = [v for v in values if not isinstance(v, bool)]
        return f"expected true or false for {cond.field}, got {bad[0]!r}" if bad else None
    if kind in ("text", "list"):
        bad = [v for v in values if not isinstance(v, str)]
        return f"expected text for {cond.field}, got {bad[0]!r} (quote it)" if bad else None
    return None


Loc = list[str | int]


@dataclass
class _Checker:
    """Checks that need the catalogue, on whole segments or on the parts of a failed one that do parse."""

    catalogue: Catalogue
    errors: list[DefinitionError] = field(default_factory=list)
    # Every behaviour condition met, for the check of filter values against the data (values.py).
    behaviours: list[tuple[Document, Loc, BehaviourCondition]] = field(default_factory=list)

    def condition(self, cond: Any, loc: Loc, doc: Document) -> None:
        if isinstance(cond, AllGroup | AnyGroup):
            name = "all" if isinstance(cond, AllGroup) else "any"
            for i, child in enumerate(getattr(cond, name)):
                self.condition(child, [*loc, name, i], doc)
        elif isinstance(cond, NotGroup):
            self.condition(cond.not_, [*loc, "not"], doc)
        elif isinstance(cond, FieldCondition):
            self.field_condition(cond, loc, doc)
        elif isinstance(cond, BehaviourCondition):
            self.behaviours.append((doc, loc, cond))  # its shape is checked by the model

    def feature(self, name: str, loc: Loc, doc: Document) -> Kind | None:
        kind = self.catalogue.kind(name)
        if kind is None:
            hint = did_you_mean(name, self.catalogue.names()) or " (see docs/features.md)"
            self.errors.append(doc.error([*loc, "field"], f"unknown feature {name!r}{hint}"))
        return kind

    def field_condition(self, cond: FieldCondition, loc: Loc, doc: Document) -> None:
        kind = self.feature(cond.field, loc, doc)
        if kind is None:
            return
        if kind != "any" and cond.op not in OPS_BY_KIND.get(kind, set()):
            allowed = ", ".join(sorted(OPS_BY_KIND.get(kind, set())))
            self.errors.append(
                doc.error([*loc, "op"], f"op {cond.op} does not apply to {cond.field} ({kind}); use {allowed}")
            )
            return
        problem = _value_errors(cond, kind)
        if problem:
            self.errors.append(doc.error([*loc, "value"], problem))

    def raw_condition(self, raw: Any, loc: Loc, doc: Document) -> None:
        """A condition of a segment that failed: whole when it parses, else its groups' members one by one."""
        try:
            cond = CONDITION.validate_python(raw)
        except ValidationError:
            pass  # its own errors are reported already, from the segment's validation
        else:
            self.condition(cond, loc, doc)
            return
        if not isinstance(raw, dict):
            return
        for group in ("all", "any"):
            if group in raw:
                for i, child in enumerate(raw[group] if isinstance(raw[group], list) else []):
                    self.raw_condition(child, [*loc, group, i], doc)
                return
        if "not" in raw:
            self.raw_condition(raw["not"], [*loc, "not"], doc)
        elif isinstance(raw.get("field"), str):
            self.feature(raw["field"], loc, doc)  # the op or value is wrong: the name may be too

    def split(self, split: Split, doc: Document) -> None:
        if split.by_field is None:
            return
        kind = self.catalogue.kind(split.by_field)
        if kind is None or kind == "list":
            hint = did_you_mean(split.by_field, self.catalogue.names())
            message = f"unknown or list-valued feature {split.by_field!r}{hint}"
            self.errors.append(doc.error(["split", "by_field"], message))
        elif self.catalogue.is_personal(split.by_field):
            # Arm names (the field's values) go into run metadata (arm.<name> sizes) and the history tables.
            self.errors.append(
                doc.error(
                    ["split", "by_field"],
                    f"{split.by_field} is a personal field: splitting on it would write every value into run metadata",
                )
            )

    def segment(self, seg: Segment, doc: Document) -> None:
        if seg.rules is not None:
            self.condition(seg.rules, ["rules"], doc)
        if seg.split is not None:
            self.split(seg.split, doc)

    def raw_segment(self, doc: Document) -> list[tuple[Loc, str]]:
        """The checks of a segment that failed validation, on its parts that parse; its references."""
        data = doc.data
        if "rules" in data:
            self.raw_condition(data["rules"], ["rules"], doc)
        # Each part's own errors are reported already, from the segment's validation.
        if "split" in data:
            with contextlib.suppress(ValidationError):
                self.split(SPLIT.validate_python(data["split"]), doc)
        refs: list[tuple[Loc, str]] = []
        if "from" in data:
            with contextlib.suppress(ValidationError):
                refs += [(["from", *loc], ref) for loc, ref in _set_refs(SET_SOURCE.validate_python(data["from"]))]
        if "priority" in data:
            with contextlib.suppress(ValidationError):
                refs += [(["priority", i], r) for i, r in enumerate(KEYS.validate_python(data["priority"]))]
        return refs


def _set_refs(source: SetSource) -> list[tuple[Loc, str]]:
    return [
        ([part, i], ref)
        for part in ("union", "intersect", "minus")
        for i, ref in enumerate(getattr(source, part) or [])
    ]


def _refs(seg: Segment) -> list[tuple[Loc, str]]:
    """Each segment `seg` is built from, with where it is named: `from.union[1]`, `priority[0]`."""
    if seg.from_ is not None:
        return [(["from", *loc], ref) for loc, ref in _set_refs(seg.from_)]
    return [(["priority", i], ref) for i, ref in enumerate(seg.priority or [])]


def _cycles(defs: dict[str, Definition]) -> tuple[list[str], list[DefinitionError]]:
    """Topological order, or an error on each segment of a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    errors: list[DefinitionError] = []

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = path[path.index(key) :] + [key]
            d = defs[key]
            field_name = "from" if d.segment.from_ is not None else "priority"
            files = tuple(sorted({defs[k].file for k in cycle} - {d.file}))
            errors.append(d.doc.error([field_name], f"cycle: {' -> '.join(cycle)}", related=files))
            return
        state[key] = 1
        for ref in defs[key].segment.refs:
            if ref in defs and ref != key:
                visit(ref, [*path, key])
        state[key] = 2
        order.append(key)

    for key in sorted(defs):
        visit(key, [])
    return order, errors


@dataclass
class SegmentCheck:
    """The valid segments, every error, the keys of the segments that failed, and the behaviour conditions."""

    segments: SegmentSet
    errors: list[DefinitionError]
    invalid: frozenset[str]
    behaviours: list[tuple[Document, Loc, BehaviourCondition]]


def check_segments(paths: Sequence[Path], catalogue: Catalogue, root: Path | None = None) -> SegmentCheck:
    """Every segment of the files (or folders) given, and every error: those of a segment that fails its
    shape checks too, on the parts of it that parse (a wrong field name does not hide a wrong date)."""
    files = read_definition_files(paths, Segment, "segment", clean_loc, root)
    errors = files.errors
    defs = {key: Definition(seg, doc) for key, (seg, doc) in files.found.items()}
    checker = _Checker(catalogue, errors)
    refs: list[tuple[Document, str | None, list[tuple[Loc, str]]]] = []
    for key, defn in defs.items():
        checker.segment(defn.segment, defn.doc)
        refs.append((defn.doc, key, _refs(defn.segment)))
    for doc in files.invalid:
        key = doc.data.get("key")
        refs.append((doc, key if isinstance(key, str) else None, checker.raw_segment(doc)))
    # A segment that failed still exists: those built from it are not told it is unknown.
    known = set(defs) | set(files.invalid_keys)
    for doc, key, named in refs:
        for loc, ref in named:
            if ref == key:
                errors.append(doc.error(loc, "a segment cannot be built from itself"))
            elif ref not in known:
                errors.append(doc.error(loc, f"unknown segment {ref!r}{did_you_mean(ref, known)}"))
    order, cycle_errors = _cycles(defs)
    errors += cycle_errors
    return SegmentCheck(SegmentSet(defs, order), errors, frozenset(files.invalid_keys), checker.behaviours)


def load_segments(paths: Sequence[Path], catalogue: Catalogue, root: Path | None = None) -> SegmentSet:
    """Every segment of the files (or folders) given; raises DefinitionErrors listing all problems."""
    check = check_segments(paths, catalogue, root)
    if check.errors:
        raise DefinitionErrors(check.errors)
    return check.segments


def load_segment_set(settings: Settings) -> SegmentSet:
    """The segments folder, validated (raises DefinitionErrors naming file, line and field)."""
    if not settings.segments_dir.exists():
        return SegmentSet()
    # The catalogue from dbt's manifest: loading definitions must not open the DuckDB file a run may be writing
    # (custom_* columns are then checked when the segments are evaluated).
    return load_segments([settings.segments_dir], load_catalogue(), root=REPO_ROOT)
