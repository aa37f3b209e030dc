"""Slow references for pool (filled by issue 2)."""
