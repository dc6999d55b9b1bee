"""What the `acrm` command prints: a short summary by default, the tools' detail with `-v`.

Quiet (the default of the command): Dagster's beta/preview/superseded notices and its user warnings are
not shown, and dbt's log goes to the run's debug log (the Dagster UI shows it) instead of the terminal.
Runs outside the command (the Dagster UI, the daemon) are not affected.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_quiet = False


def configure(verbose: bool) -> None:
    global _quiet
    _quiet = not verbose
    if _quiet:
        from dagster import BetaWarning, PreviewWarning, SupersessionWarning

        for category in (BetaWarning, PreviewWarning, SupersessionWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"dagster(_\w+)?\.")


class _Lines(io.TextIOBase):
    """A file whose complete lines go to `sink`."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink, self._pending = sink, ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._sink(line)
        return len(text)


def routed(items: Iterable[T], sink: Callable[[str], None]) -> Iterator[T]:
    """`items`, with whatever producing each one prints sent to `sink` when quiet (dagster-dbt writes dbt's
    log to stdout while it streams events)."""
    if not _quiet:
        yield from items
        return
    lines = _Lines(sink)
    iterator = iter(items)
    while True:
        with contextlib.redirect_stdout(lines):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item
