"""Load and validate export definitions against the segments and the feature catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from acrm_pipelines.exports.spec import (
    AudienceDestination,
    Export,
    FileDestination,
    WebhookDestination,
    host_allowed,
    outbox_relative,
    path_values,
    url_host,
)
from acrm_pipelines.segments.catalogue import Catalogue, load_catalogue
from acrm_pipelines.segments.validate import SegmentSet
from acrm_pipelines.settings import REPO_ROOT, Settings
from acrm_pipelines.yaml_specs import DefinitionError, DefinitionErrors, Document, read_definitions


@dataclass
class ExportDefinition:
    export: Export
    doc: Document


@dataclass
class ExportSet:
    definitions: dict[str, ExportDefinition] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Export:
        return self.definitions[key].export

    def __contains__(self, key: str) -> bool:
        return key in self.definitions

    def __len__(self) -> int:
        return len(self.definitions)

    @property
    def keys(self) -> list[str]:
        return sorted(self.definitions)


def load_exports(
    paths: Sequence[Path],
    segments: SegmentSet,
    catalogue: Catalogue,
    root: Path | None = None,
    allowed_hosts: Sequence[str] | None = None,
):
    """Every export of the files (or folders) given; raises DefinitionErrors listing all problems.

    `allowed_hosts`: webhook hosts besides loopback; by default ACRM_WEBHOOK_ALLOWED_HOSTS.
    """
    if allowed_hosts is None:
        allowed_hosts = Settings.from_env().webhook_allowed_hosts
    found, errors = read_definitions(paths, Export, "export", clean_loc, root)
    defs = {key: ExportDefinition(export, doc) for key, (export, doc) in found.items()}
    for export, doc in found.values():
        errors += _check(export, doc, segments, catalogue, allowed_hosts)
    errors += _one_window_per_campaign(found.values())
    if errors:
        raise DefinitionErrors(errors)
    return ExportSet(defs)


DESTINATION_TAGS = {
    "csv",
    "parquet",
    "google_customer_match",
    "meta_custom_audience",
    "webhook",
    "postgres",
    "bonus",
    "promo_code",
}


def clean_loc(loc):
    """Drop pydantic's union tag after `destination` (it is the `type`, not a YAML key)."""
    out = list(loc)
    if len(out) > 1 and out[0] == "destination" and out[1] in DESTINATION_TAGS:
        del out[1]
    return out


def _one_window_per_campaign(found) -> list[DefinitionError]:
    """A campaign's orders are attributed with one window: exports of it that set one must agree."""
    first: dict[str, tuple[Export, Document]] = {}
    errors = []
    for export, doc in sorted(found, key=lambda f: (f[1].file, f[1].index)):
        if export.attribution_window is None:
            continue
        seen = first.setdefault(export.campaign, (export, doc))
        if seen[0].attribution_window != export.attribution_window:
            errors.append(
                doc.error(
                    ["attribution_window"],
                    f"campaign {export.campaign!r} has attribution window {seen[0].attribution_window} in export "
                    f"{seen[0].key!r} ({seen[1].file}:{seen[1].line_of(['attribution_window'])}): "
                    "one window per campaign",
                )
            )
    return errors


def _check(
    export: Export, doc: Document, segments: SegmentSet, catalogue: Catalogue, allowed_hosts: Sequence[str]
) -> list[DefinitionError]:
    errors: list[DefinitionError] = []
    ref = export.segment
    if ref is None:
        pass  # sent by journeys only
    elif ref.segment not in segments:
        errors.append(doc.error(["segment"], f"unknown segment {ref.segment!r}"))
    elif ref.arm is not None:
        seg = segments[ref.segment]
        arms = seg.arms
        by_field = seg.split is not None and seg.split.by_field is not None
        if not by_field and ref.arm not in arms:
            known = ", ".join(arms) or "none: the segment has no priority or split"
            errors.append(
                doc.error(["segment", "arm"], f"segment {ref.segment!r} has no arm {ref.arm!r} (arms: {known})")
            )
    for name, spec in export.fields.items():
        if spec.feature is not None and catalogue.kind(spec.feature) is None:
            errors.append(doc.error(["fields", name], f"unknown feature {spec.feature!r} (see docs/features.md)"))
    dest = export.destination.type
    needs = {"google_customer_match": ("email", "phone"), "meta_custom_audience": ("email", "phone")}.get(dest, ())
    if needs and not any(spec.feature in needs for spec in export.fields.values()):
        errors.append(doc.error(["fields"], f"{dest} needs an email or phone field"))
    if isinstance(export.destination, FileDestination | AudienceDestination):
        # The field itself was checked with sample values; this is the path with the export's own key and
        # campaign (their length). The outbox is checked again, symbolic links included, when writing.
        suffix = "csv" if isinstance(export.destination, AudienceDestination) else None
        try:
            outbox_relative(export.destination.path, path_values(export, "2024-01-01", suffix))
        except ValueError as err:
            errors.append(doc.error(["destination", "path"], str(err)))
    if isinstance(export.destination, WebhookDestination):
        # Only loopback unless listed: a definition must not make the pipeline call internal services
        # (cloud metadata at 169.254.169.254, admin ports on the private network) with customer data.
        host = url_host(export.destination.url)
        if not host_allowed(host, allowed_hosts):
            errors.append(
                doc.error(
                    ["destination", "url"],
                    f"host {host} is not allowed: add it to ACRM_WEBHOOK_ALLOWED_HOSTS "
                    "(only loopback hosts are allowed without it)",
                )
            )
    return errors


def load_export_set(settings: Settings, segments: SegmentSet) -> ExportSet:
    if not settings.exports_dir.exists():
        return ExportSet()
    # The catalogue from dbt's manifest: loading definitions must not open the DuckDB file a run may be writing.
    return load_exports([settings.exports_dir], segments, load_catalogue(), root=REPO_ROOT)
