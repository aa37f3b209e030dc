"""Placeholder: filled by the activation work of issue 2."""

__all__: list[str] = []
