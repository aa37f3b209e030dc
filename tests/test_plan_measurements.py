"""The measurements behind the convolution plan (benchmarks/results/conv_plan_measurements.csv):
a well-formed table whose rows say which rule they justify and where the text came from."""

import csv
import re
from pathlib import Path

import pytest

from nbconv.conv import plan as _plan

CSV = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "conv_plan_measurements.csv"

COLUMNS = ["rule", "file", "symbol", "pass", "layer", "batch", "measure", "values", "unit",
           "compared", "source"]

#: the files whose docstrings and comments held the measurements (at commit f8f13af)
FILES = {f"nbconv/conv/{m}.py" for m in ("plan", "direct", "im2col", "tapgemm", "winograd",
                                         "engine")}
FILES |= {f"nbconv/kernels/conv2d_{m}.py" for m in ("depthwise", "direct", "im2col", "pixvec",
                                                     "regblock", "tapgemm", "wide", "winograd")}
FILES |= {"nbconv/_blas.py"}
#: kernel files named since the move to kernels/conv/ (measurements added there later)
FILES |= {f"nbconv/kernels/conv/{m}.py" for m in ("pixel_vectors", "register_blocks",
                                                       "tapgemm")}

#: the names of the "auto" rules (hyphenated; constants and functions are identifiers)
AUTO_RULES = {rule.name for rule in _plan.AUTO_RULES}

PASSES = {"forward", "backward", "data-gradient", "weight-gradient", "both", "n/a"}


@pytest.fixture(scope="module")
def table():
    with CSV.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_columns(table):
    fields, rows = table
    assert fields == COLUMNS
    assert rows, "the table has no rows"
    assert all(None not in row and len(row) == len(COLUMNS) for row in rows), \
        "a row has more or fewer cells than the header"


def test_every_row_names_rule_file_and_values(table):
    for i, row in enumerate(table[1], start=2):
        for key in ("rule", "file", "values", "measure", "compared", "source"):
            assert row[key].strip(), f"line {i}: empty {key!r}"


def test_files_are_the_engine_files(table):
    for i, row in enumerate(table[1], start=2):
        assert row["file"] in FILES, f"line {i}: {row['file']!r} is not one of the engine files"


def test_rule_names_and_passes(table):
    for i, row in enumerate(table[1], start=2):
        rule = row["rule"]
        if "-" in rule:
            assert rule in AUTO_RULES, f"line {i}: unknown auto rule {rule!r}"
        else:  # a constant or function, optionally module-qualified
            assert re.fullmatch(r"[A-Za-z_][\w.]*", rule), f"line {i}: rule {rule!r}"
        assert row["pass"] in PASSES, f"line {i}: pass {row['pass']!r}"
        assert re.fullmatch(r"(\d+(;\d+)*)?", row["batch"]), f"line {i}: batch {row['batch']!r}"

