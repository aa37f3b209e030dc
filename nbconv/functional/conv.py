"""Placeholder: filled by the conv work of issue 2."""

__all__: list[str] = []
