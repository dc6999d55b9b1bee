"""The settings one load of the definitions uses, and what the components of that load share.

`build_definitions(settings)` loads the `defs/` folder with these settings in force (tests, the CLI);
a load of the folder without it (`dg`, the UI's code server) uses the ACRM_* environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from acrm_pipelines.settings import Settings

T = TypeVar("T")


@dataclass
class Load:
    settings: Settings
    _made: dict[str, Any] = field(default_factory=dict)

    def once(self, name: str, make: Callable[[], T]) -> T:
        """`make()` the first time a component of this load asks for `name`; the same object after."""
        if name not in self._made:
            self._made[name] = make()
        return self._made[name]


_current: ContextVar[Load | None] = ContextVar("acrm_load", default=None)


@contextmanager
def loading(settings: Settings) -> Iterator[Load]:
    load = Load(settings)
    token = _current.set(load)
    try:
        yield load
    finally:
        _current.reset(token)


def current() -> Load:
    return _current.get() or Load(Settings.from_env())
