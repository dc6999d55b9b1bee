"""Dates of the generated demo data (the `demo_landing` fixture), for the modules that build constants or
parametrize lists from them."""

from __future__ import annotations

from datetime import date

# The demo data's history ends here; tests cut features at dates inside it.
DEMO_END = date(2026, 11, 20)
