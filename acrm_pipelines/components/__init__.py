"""Dagster Components: what `defs/` loads. They sit above the domains and wire their engines into assets."""
