"""Slow references for correlate (filled by issue 2)."""
