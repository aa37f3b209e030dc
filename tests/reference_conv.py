"""Slow references for conv (filled by issue 2)."""
