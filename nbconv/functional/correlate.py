"""Placeholder: filled by the correlate work of issue 2."""

__all__: list[str] = []
