"""Placeholder: filled by the linear work of issue 2."""

__all__: list[str] = []
