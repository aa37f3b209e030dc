"""The one-line notice that nbconv's kernels are being compiled: shown once on the first real
compilation, not when the kernels load from a warm cache, silenced by NBCONV_COMPILE_NOTICE=0."""

import os
import subprocess
import sys

import pytest

SCRIPT = ("import numpy as np, nbconv as nc; "
          "nc.relu(np.ones(8, np.float32)); nc.relu(np.ones(8)); print('ok')")


def _run(cache, **env):
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    return out.stderr


def test_notice_once_on_compile_and_not_from_cache(tmp_path):
    first = _run(tmp_path / "cache")
    assert first.count("nbconv: compiling kernels") == 1, first
    assert str(tmp_path / "cache") in first
    assert "nbconv: compiling" not in _run(tmp_path / "cache")  # warm: loaded, not compiled
    assert "nbconv: compiling" not in _run(tmp_path / "other", NBCONV_COMPILE_NOTICE="0")


BAR_SCRIPT = ("import numpy as np, nbconv as nc, tqdm; "
              "bar = tqdm.tqdm(range(3), desc='epoch 1/1', file=__import__('sys').stderr); "
              "bar.update(1); nc.relu(np.ones(8, np.float32)); bar.close(); print('ok')")


def _run_script(script, cache, **env):
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    return out.stderr


def test_notice_on_its_own_line_above_a_progress_bar(tmp_path):
    err = _run_script(BAR_SCRIPT, tmp_path / "cache")
    # what a terminal shows on each line is what follows the line's last carriage return
    shown = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]
    notice = [s for s in shown if "nbconv: compiling" in s]
    assert len(notice) == 1 and notice[0].startswith("nbconv: compiling"), repr(err)
    assert "epoch 1/1" not in notice[0]


@pytest.mark.parametrize("var, rank, shown", [("PMI_RANK", "1", False),
                                              ("OMPI_COMM_WORLD_RANK", "2", False),
                                              ("PMIX_RANK", "0", True)])
def test_notice_on_rank_0_only(tmp_path, var, rank, shown):
    env = {v: "" for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                           "MV2_COMM_WORLD_RANK", "SLURM_PROCID")}
    env[var] = rank
    err = _run(tmp_path / "cache", **env)
    assert ("nbconv: compiling" in err) == shown, err
