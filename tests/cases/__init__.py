"""Plain data that test modules share at import time (where a fixture cannot reach: parametrize lists, module
constants derived from them). No fixtures, no helpers: those are in tests/conftest.py."""
