"""`acrm validate`: the named segment, export and journey files checked in the context of the whole project.

Above the domains: the exports are checked against the segments and the journeys against both, so no
domain's validator reads another's folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from acrm_pipelines.exports.validate import ExportSet, load_exports
from acrm_pipelines.journeys.validate import load_journeys
from acrm_pipelines.segments.catalogue import load_catalogue
from acrm_pipelines.segments.spec import Segment, Split
from acrm_pipelines.segments.validate import SegmentSet, check_segments
from acrm_pipelines.segments.values import check_values
from acrm_pipelines.settings import Settings
from acrm_pipelines.yaml_specs import DefinitionError, DefinitionErrors, read_documents, yaml_files


@dataclass
class _WithInvalid(SegmentSet):
    """The valid segments and the keys of those that failed, for checking exports: an export of a segment
    that failed validation is not told the segment is unknown (the segment's own errors say what is wrong)."""

    invalid: frozenset[str] = frozenset()

    def __contains__(self, key: str) -> bool:
        return key in self.definitions or key in self.invalid

    def __getitem__(self, key: str) -> Segment:
        if key in self.definitions:
            return self.definitions[key].segment
        # Its arms are unknown: a stand-in that, like a by_field split, leaves any arm an export names alone.
        return Segment.model_construct(key=key, split=Split.model_construct(by_field=key))


@dataclass
class ProjectReport:
    """What `acrm validate` reports: the problems of the files checked (every file when none is named)."""

    segments: SegmentSet  # the valid segments of the whole project
    checked: dict[str, int]  # valid definitions in the files checked: {"segments": n, "exports": m, "journeys": j}
    errors: list[DefinitionError]
    warnings: list[DefinitionError]  # filter values the loaded data does not hold (values.py)
    notes: list[str]  # what could not be checked, and why
    elsewhere: int = 0  # errors in other files of the project, not named


def _folder_files(folder: Path) -> list[Path]:
    return [p.resolve() for p in yaml_files([folder])] if folder.is_dir() else []


def _looks_like_export(path: Path) -> bool:
    """A file outside both folders holds exports when a definition names a destination or a segment to send."""
    docs, _ = read_documents(path)
    return any(
        isinstance(d.data, dict)
        and ("destination" in d.data or "segment" in d.data)
        and not {"rules", "from", "priority"} & d.data.keys()
        for d in docs
    )


def _looks_like_journey(path: Path) -> bool:
    docs, _ = read_documents(path)
    return any(isinstance(d.data, dict) and "steps" in d.data for d in docs)


def _definitions_in(files: Sequence[Path]) -> int:
    return sum(isinstance(d.data, dict) for f in files for d in read_documents(f)[0])


def validate_project(settings: Settings, paths: Sequence[Path] = (), root: Path | None = None) -> ProjectReport:
    """Every segment and export of the project, reported for the files or folders named (all when none is).

    The named files are checked with the rest of the project (ACRM_SEGMENTS_DIR, ACRM_EXPORTS_DIR): a
    reference to a segment of another file is known, a key defined in another file too is a duplicate, and a
    file of the exports folder (or one holding exports) is checked as exports. A named file outside both
    folders is checked as if it were added to them.
    """
    segment_files, export_files = _folder_files(settings.segments_dir), _folder_files(settings.exports_dir)
    journey_files = _folder_files(settings.journeys_dir)
    named: set[Path] | None = None
    if paths:
        named = set()
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or folder")
            for file in (p.resolve() for p in yaml_files([path])):
                named.add(file)
                if file in segment_files or file in export_files or file in journey_files:
                    continue
                if _looks_like_journey(file):
                    journey_files.append(file)
                else:
                    (export_files if _looks_like_export(file) else segment_files).append(file)
    catalogue = load_catalogue(settings.duckdb_path)
    check = check_segments(segment_files, catalogue, root)
    errors = list(check.errors)

    def shown(file: Path) -> str:  # as read_definitions names it
        return str(file.relative_to(root)) if root and file.is_relative_to(root) else str(file)

    scope = None if named is None else {shown(f) for f in named}

    def wanted(e: DefinitionError) -> bool:
        return scope is None or e.file in scope or bool(scope.intersection(e.related))

    exports_checked: int | None = None
    segments = _WithInvalid(check.segments.definitions, check.segments.order, invalid=check.invalid)
    exports: ExportSet | None = ExportSet()
    if export_files:
        try:
            exports = load_exports(export_files, segments, catalogue, root=root)
            exports_checked = sum(scope is None or d.doc.file in scope for d in exports.definitions.values())
        except DefinitionErrors as err:
            errors += err.errors
            exports = None
    if exports_checked is None:  # the named export files are valid when no error is reported in them
        exports_checked = _definitions_in([f for f in export_files if scope is None or shown(f) in scope])
    journeys_checked = 0
    notes: list[str] = []
    if journey_files:
        if exports is None:
            notes.append("the journeys' sends were not checked against the exports, which have errors")
        try:
            journeys = load_journeys(journey_files, segments, exports, root=root)
            journeys_checked = sum(scope is None or d.file in scope for d in journeys.docs.values())
        except DefinitionErrors as err:
            errors += err.errors
    values = check_values(check.behaviours, settings.duckdb_path, settings.duckdb_config())
    segments_checked = sum(scope is None or d.file in scope for d in check.segments.definitions.values())
    return ProjectReport(
        segments=check.segments,
        checked={"segments": segments_checked, "exports": exports_checked, "journeys": journeys_checked},
        errors=[e for e in errors if wanted(e)],
        warnings=[w for w in values.warnings if wanted(w)],
        notes=[*values.notes, *notes],
        elsewhere=sum(not wanted(e) for e in errors),
    )
