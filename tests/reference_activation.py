"""Slow references for activation (filled by issue 2)."""
