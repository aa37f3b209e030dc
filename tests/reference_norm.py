"""Slow references for norm (filled by issue 2)."""
