"""Load and validate journey definitions against the segments and exports; all errors at once, each with
file, line and field. A journey's steps are a tree (a branch's steps end where it would have gone on), so
they have no cycles; what is checked is every reference and every step id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from acrm_pipelines.exports.validate import ExportSet
from acrm_pipelines.journeys.deliver import SEND_TYPES
from acrm_pipelines.journeys.program import all_steps
from acrm_pipelines.journeys.spec import BranchStep, Journey, SendStep
from acrm_pipelines.segments.validate import SegmentSet
from acrm_pipelines.settings import REPO_ROOT, Settings
from acrm_pipelines.yaml_specs import DefinitionError, DefinitionErrors, Document, did_you_mean, read_definitions

STEP_TAGS = {"send", "wait", "wait_until", "branch"}


@dataclass
class JourneySet:
    journeys: dict[str, Journey] = field(default_factory=dict)
    docs: dict[str, Document] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Journey:
        return self.journeys[key]

    def __contains__(self, key: str) -> bool:
        return key in self.journeys

    def __len__(self) -> int:
        return len(self.journeys)

    @property
    def keys(self) -> list[str]:
        return sorted(self.journeys)


def clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    """Drop pydantic's union tags (the step kinds) from error locations: they are not YAML keys."""
    out = list(loc)
    return [part for i, part in enumerate(out) if not (part in STEP_TAGS and i > 0 and isinstance(out[i - 1], int))]


def load_journeys(
    paths: Sequence[Path], segments: SegmentSet, exports: ExportSet | None, root: Path | None = None
) -> JourneySet:
    """Every journey of the files (or folders) given; raises DefinitionErrors listing all problems. With
    `exports` None (they have errors of their own) the sends are not checked."""
    found, errors = read_definitions(paths, Journey, "journey", clean_loc, root)
    for journey, doc in found.values():
        errors += _check(journey, doc, segments, exports)
    if errors:
        raise DefinitionErrors(errors)
    return JourneySet({k: j for k, (j, _) in found.items()}, {k: d for k, (_, d) in found.items()})


def _check(journey: Journey, doc: Document, segments: SegmentSet, exports: ExportSet | None) -> list[DefinitionError]:
    errors: list[DefinitionError] = []

    def segment(loc: list[str | int], key: str) -> None:
        if key not in segments:
            errors.append(doc.error(loc, f"unknown segment {key!r}{did_you_mean(key, segments.order)}"))

    entry = journey.on
    for name in ("entered", "exited"):
        if getattr(entry, name):
            segment(["on", name], getattr(entry, name))
    if entry.moved:
        segment(["on", "moved", "from"], entry.moved.from_)
        segment(["on", "moved", "to"], entry.moved.to)
        if entry.moved.from_ == entry.moved.to:
            errors.append(doc.error(["on", "moved"], "from and to are the same segment"))
    for i, rule in enumerate(journey.exit_when):
        if rule.segment:
            segment(["exit_when", i, "segment"], rule.segment)
    seen: dict[str, str] = {}
    for step_id, loc, step in all_steps(journey.steps):
        if step_id in seen:
            errors.append(doc.error([*loc, "id"], f"step id {step_id!r} is used twice"))
        seen[step_id] = step_id
        if isinstance(step, SendStep) and exports is not None:
            if step.send not in exports:
                hint = did_you_mean(step.send, exports.keys)
                errors.append(doc.error([*loc, "send"], f"unknown export {step.send!r}{hint}"))
            elif exports[step.send].segment is not None:
                errors.append(
                    doc.error(
                        [*loc, "send"],
                        f"export {step.send!r} has a segment and runs for it every night; a journey sends "
                        "exports without one (docs/journeys.md)",
                    )
                )
            elif exports[step.send].destination.type not in SEND_TYPES:
                kind = exports[step.send].destination.type
                errors.append(
                    doc.error(
                        [*loc, "send"],
                        f"export {step.send!r} goes to {kind}; journeys send through csv, parquet and webhook "
                        "exports for now",
                    )
                )
        if isinstance(step, BranchStep):
            segment([*loc, "branch", "segment"], step.branch.segment)
    return errors


def load_journey_set(settings: Settings, segments: SegmentSet, exports: ExportSet) -> JourneySet:
    if not settings.journeys_dir.exists():
        return JourneySet()
    return load_journeys([settings.journeys_dir], segments, exports, root=REPO_ROOT)
