"""Test helper: count the calls of a module-level function while still running it."""

from __future__ import annotations


def count_calls(monkeypatch, owner, name: str) -> list:
    """Replace ``owner.name`` (for the test) by a wrapper that appends 1 to the returned list
    on every call and then calls the original."""
    calls = []
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls
