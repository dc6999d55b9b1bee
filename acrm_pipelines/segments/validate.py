"""Load and validate every segment definition; all errors at once, each with file, line and field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from acrm_pipelines.segments.catalogue import Catalogue, Kind
from acrm_pipelines.segments.dates import is_relative, month_day, parse_date
from acrm_pipelines.segments.spec import (
    MAX_SPAN,
    AllGroup,
    AnyGroup,
    BehaviourCondition,
    FieldCondition,
    NotGroup,
    Segment,
)
from acrm_pipelines.yaml_specs import DefinitionError, DefinitionErrors, Document, read_definitions

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


def _check_condition(cond, loc: list, doc: Document, cat: Catalogue, errors: list[DefinitionError]) -> None:
    if isinstance(cond, AllGroup | AnyGroup):
        name = "all" if isinstance(cond, AllGroup) else "any"
        for i, child in enumerate(getattr(cond, name)):
            _check_condition(child, [*loc, name, i], doc, cat, errors)
    elif isinstance(cond, NotGroup):
        _check_condition(cond.not_, [*loc, "not"], doc, cat, errors)
    elif isinstance(cond, FieldCondition):
        kind = cat.kind(cond.field)
        if kind is None:
            hint = ", ".join(_close(cond.field, cat.names())) or "see docs/features.md"
            errors.append(doc.error([*loc, "field"], f"unknown feature {cond.field!r} (did you mean: {hint})"))
            return
        if kind != "any" and cond.op not in OPS_BY_KIND.get(kind, set()):
            allowed = ", ".join(sorted(OPS_BY_KIND.get(kind, set())))
            errors.append(
                doc.error([*loc, "op"], f"op {cond.op} does not apply to {cond.field} ({kind}); use {allowed}")
            )
            return
        problem = _value_errors(cond, kind)
        if problem:
            errors.append(doc.error([*loc, "value"], problem))
    elif isinstance(cond, BehaviourCondition):
        return  # shape checked by the model; filter values are free text


def _close(name: str, names: list[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, names, n=3)


def _check_segment(defn: Definition, cat: Catalogue, errors: list[DefinitionError]) -> None:
    seg, doc = defn.segment, defn.doc
    if seg.rules is not None:
        _check_condition(seg.rules, ["rules"], doc, cat, errors)
    if seg.split is not None and seg.split.by_field is not None:
        kind = cat.kind(seg.split.by_field)
        if kind is None or kind == "list":
            errors.append(doc.error(["split", "by_field"], f"unknown or list-valued feature {seg.split.by_field!r}"))
        elif cat.is_personal(seg.split.by_field):
            # Arm names (the field's values) go into run metadata (arm.<name> sizes) and the history tables.
            errors.append(
                doc.error(
                    ["split", "by_field"],
                    f"{seg.split.by_field} is a personal field: splitting on it would write every value into "
                    "run metadata",
                )
            )


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
            errors.append(d.doc.error([field_name], f"cycle: {' -> '.join(cycle)}"))
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


def load_segments(paths: Sequence[Path], catalogue: Catalogue, root: Path | None = None) -> SegmentSet:
    """Every segment of the files (or folders) given; raises DefinitionErrors listing all problems."""
    found, errors = read_definitions(paths, Segment, "segment", clean_loc, root)
    defs = {key: Definition(seg, doc) for key, (seg, doc) in found.items()}
    for defn in defs.values():
        _check_segment(defn, catalogue, errors)
        seg = defn.segment
        loc = "from" if seg.from_ is not None else "priority"
        for ref in seg.refs:
            if ref not in defs:
                errors.append(defn.doc.error([loc], f"unknown segment {ref!r}"))
            elif ref == seg.key:
                errors.append(defn.doc.error([loc], "a segment cannot be built from itself"))
    order, cycle_errors = _cycles(defs)
    errors += cycle_errors
    if errors:
        raise DefinitionErrors(errors)
    return SegmentSet(defs, order)
