"""Placeholder: filled by the norm work of issue 2."""

__all__: list[str] = []
