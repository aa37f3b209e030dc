"""Placeholder: filled by the pool work of issue 2."""

__all__: list[str] = []
