"""Data-parallel training over MPI (nbconv.distributed, fit(distributed=True)).

The sharding is checked in this process against plain ``DataLoader`` batches; the training
runs launch ``mpiexec -n 1/2/3 python tests/mpi_worker.py`` (one thread per rank, tiny models)
and compare the weights with a single-process ``fit`` at the global batch size computed here:
an independent reference, since that path never touches MPI.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nbconv as nc
from nbconv import data, distributed, losses
from nbconv.distributed import ShardedLoader
from nbconv.train import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mpi_worker as worker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(worker.__file__).resolve()


def _run(cmd, timeout, **kw):
    """``subprocess.run`` with the output captured and no standard input (as in CI); on a
    timeout the whole process group goes (mpiexec and every rank it started), then the
    test fails with ``TimeoutExpired``."""
    with subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                          **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# -- sharding, in this process ---------------------------------------------------------------
def _loader(n, batch, transform=None, drop_last=False):
    x = np.random.default_rng(1).standard_normal((n, 1, 6, 6)).astype(np.float32)
    y = np.arange(n)
    return data.DataLoader(x, y, batch, seed=5, transform=transform, drop_last=drop_last)


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("n", [24, 25, 31])
@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_of_a_step_make_up_the_single_process_batch(world_size, n, augment, drop_last):
    b = 4
    tf = data.transforms.random_crop(2) if augment else None
    single = _loader(n, world_size * b, tf, drop_last)
    shards = [ShardedLoader(_loader(n, b, tf, drop_last), r, world_size)
              for r in range(world_size)]
    for epoch in range(2):
        expected = list(single)
        per_rank = [list(s) for s in shards]
        assert all(len(steps) == len(expected) == len(s) for steps, s in zip(per_rank, shards))
        for k, (xb, yb) in enumerate(expected):
            xs = np.concatenate([steps[k][0] for steps in per_rank])
            ys = np.concatenate([steps[k][1] for steps in per_rank])
            np.testing.assert_array_equal(ys, yb)   # disjoint, in the single process's order
            np.testing.assert_array_equal(xs, xb)   # the same augmentation, bit for bit
            sizes = [len(steps[k][1]) for steps in per_rank]
            assert max(sizes) - min(sizes) <= 1     # the last batch split evenly
        assert all(s.epoch == epoch + 1 for s in shards)
    seen = np.concatenate([yb for steps in per_rank for _, yb in steps])
    assert len(np.unique(seen)) == len(seen)


def test_a_rank_may_get_no_sample_of_the_last_batch():
    # 25 samples, 3 ranks x 4: global batches 12, 12, 1 -> ranks 1 and 2 get nothing of the last
    sizes = [[len(yb) for _, yb in ShardedLoader(_loader(25, 4), r, 3)] for r in range(3)]
    assert sizes == [[4, 4, 1], [4, 4, 0], [4, 4, 0]]
    s = ShardedLoader(_loader(25, 4), 2, 3)
    assert s.global_batch_sizes() == [12, 12, 1]
    assert "rank 2/3: rows 8-11 of each global batch of 12, 8 of 25 samples" in s.describe()


def test_sharded_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank 2, world_size 2"):
        ShardedLoader(_loader(8, 2), 2, 2)
    with pytest.raises(TypeError, match="DataLoader"):
        ShardedLoader([(np.zeros(1), np.zeros(1))], 0, 1)
    with pytest.raises(TypeError, match="'distributed'"):
        fit(worker.build("bn", 0), losses.CrossEntropyLoss(), None, _loader(8, 2), 1,
            distributed="yes")


def test_without_mpi4py_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `import mpi4py` fail
    monkeypatch.setattr(distributed, "_world", [None])
    with pytest.raises(ImportError, match=r"pip install 'nbconv\[mpi\]'"):
        distributed.init()
    model = worker.build("bn", 0)
    with pytest.raises(ImportError, match="mpi4py"):
        fit(model, losses.CrossEntropyLoss(), worker.optimizer(model), _loader(8, 2), 1,
            distributed=True, progress=False)


def test_example_distributed_without_mpi_is_a_clear_error(tmp_path):
    fake = tmp_path / "mpi4py"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named mpi4py')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    proc = _run([sys.executable, ROOT / "examples" / "train_lenet.py", "--distributed",
                 "--epochs", "1"], timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode != 0
    assert "--distributed" in proc.stderr and "pip install 'nbconv[mpi]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.h5"))


# -- runs under mpiexec ------------------------------------------------------------------------
def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py not installed (pip install 'nbconv[mpi]'; scripts/test.sh does)")
    exe = Path(sys.executable).parent / "mpiexec"
    exe = str(exe) if exe.exists() else shutil.which("mpiexec")
    if exe is None:
        pytest.skip("no mpiexec (pip install mpich; scripts/test.sh does)")
    version = _run([exe, "--version"], timeout=30)
    flags = []
    if "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout:
        # Open MPI refuses root and more ranks than cores unless told; MPICH's hydra does not.
        flags = ["--allow-run-as-root", "--oversubscribe"]
    return [exe, *flags]


def _launch(n, out, *args, timeout=300):
    """Run the worker on ``n`` ranks; (completed process, seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    t0 = time.monotonic()
    proc = _run([*_mpiexec(), "-n", n, sys.executable, WORKER, out, *args], timeout=timeout,
                env=env, cwd=out)
    return proc, time.monotonic() - t0


def _ok(proc):
    assert proc.returncode == 0, f"mpiexec failed:\n{proc.stdout}\n{proc.stderr}"


def _weights(out, rank):
    with np.load(out / f"weights_rank{rank}.npz") as f:
        return dict(f)


def _single_process(kind, n, batch, epochs, shift=0, resume=None):
    """The reference: one process, no MPI, batch = the distributed run's global batch, on one
    thread like each rank (the kernels' reductions are split by thread count)."""
    threads = nc.get_num_threads()
    nc.set_num_threads(1)
    try:
        model = worker.build(kind, seed=0)
        opt = worker.optimizer(model)
        train, val = worker.loaders(n, batch, shift)
        hist = fit(model, losses.CrossEntropyLoss(), opt, train, epochs, val_loader=val,
                   resume=resume, progress=False)
    finally:
        nc.set_num_threads(threads)
    return model.state_dict(), hist


def _assert_close(got, ref, rtol=1e-5, atol=1e-6):
    assert set(got) == set(ref)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=rtol, atol=atol, err_msg=k)


def _assert_ranks_identical(out, n):
    w0 = _weights(out, 0)
    for r in range(1, n):
        for k, v in _weights(out, r).items():
            np.testing.assert_array_equal(v, w0[k], err_msg=f"rank {r}: {k}")


def test_two_ranks_give_the_weights_of_one_process_at_double_batch(tmp_path):
    # lenet5 with random shifts: 22 samples, 4 per rank -> global batches 8, 8, 6
    proc, _ = _launch(2, tmp_path, "--model", "lenet", "--n", 22, "--batch", 4, "--shift", 2,
                      "--epochs", 2, "--rank-files")
    _ok(proc)
    _assert_ranks_identical(tmp_path, 2)
    ref, ref_hist = _single_process("lenet", 22, 8, 2, shift=2)
    _assert_close(_weights(tmp_path, 0), ref)
    hist = json.loads((tmp_path / "history.json").read_text())
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(hist[key], ref_hist[key], rtol=1e-5, err_msg=key)
    assert len(hist["allreduce_seconds"]) == 2
    # rank 0 alone writes the checkpoint and the PNG
    assert (tmp_path / "ckpt_rank0.h5").exists() and (tmp_path / "plot_rank0.png").exists()
    assert not (tmp_path / "ckpt_rank1.h5").exists() and not (tmp_path / "plot_rank1.png").exists()
    _, _, meta = nc.io.load_state(tmp_path / "ckpt_rank0.h5")
    assert meta["world_size"] == 2 and meta["global_batch_size"] == 8


def test_three_ranks_with_uneven_and_empty_shards(tmp_path):
    # 25 samples, 4 per rank: global batches 12, 12, 1 (ranks 1 and 2 get none of the last)
    proc, _ = _launch(3, tmp_path, "--model", "lenet", "--n", 25, "--batch", 4, "--epochs", 2)
    _ok(proc)
    _assert_ranks_identical(tmp_path, 3)
    ref, _ = _single_process("lenet", 25, 12, 2)
    _assert_close(_weights(tmp_path, 0), ref)


def test_one_rank_is_bit_identical_to_plain_fit(tmp_path):
    proc, _ = _launch(1, tmp_path, "--model", "lenet", "--n", 22, "--batch", 8, "--epochs", 2)
    _ok(proc)
    ref, _ = _single_process("lenet", 22, 8, 2)
    for k, v in _weights(tmp_path, 0).items():
        np.testing.assert_array_equal(v, ref[k], err_msg=k)


def test_batch_norm_synchronised_and_averaged(tmp_path):
    # sync_batch_norm: the global batch's statistics, so one process at the double batch
    sync = tmp_path / "sync"
    proc, _ = _launch(2, sync, "--model", "bn", "--sync-bn", "--n", 22, "--batch", 4,
                      "--epochs", 2)
    _ok(proc)
    _assert_ranks_identical(sync, 2)
    ref, _ = _single_process("bn", 22, 8, 2)
    _assert_close(_weights(sync, 0), ref)
    # per-rank statistics: running stats averaged each epoch, so every rank ends identical
    local = tmp_path / "local"
    proc, _ = _launch(2, local, "--model", "bn", "--n", 22, "--batch", 4, "--epochs", 2)
    _ok(proc)
    _assert_ranks_identical(local, 2)
    w = _weights(local, 0)
    assert not np.allclose(w["1.running_mean"], ref["1.running_mean"], rtol=1e-4, atol=0)


def test_a_stop_asked_by_one_rank_stops_every_rank(tmp_path):
    proc, _ = _launch(3, tmp_path, "--n", 25, "--batch", 4, "--epochs", 3, "--stop-rank", 2,
                      "--stop-epoch", 1)
    _ok(proc)  # the others would wait for rank 2 in their next reduction, then abort
    _assert_ranks_identical(tmp_path, 3)
    assert len(json.loads((tmp_path / "history.json").read_text())["loss"]) == 1
    ref, _ = _single_process("lenet", 25, 12, 1)
    _assert_close(_weights(tmp_path, 0), ref)


def test_average_batch_norm_stats_is_the_mean_over_ranks(tmp_path):
    script = tmp_path / "avg.py"
    script.write_text(
        "import numpy as np\n"
        "from nbconv import distributed, nn\n"
        "w = distributed.init()\n"
        "m = nn.Sequential(nn.BatchNorm2d(3), nn.BatchNorm1d(2))\n"
        "m[0]._buffers['running_mean'][:] = [w.rank, 2 * w.rank, 1]\n"
        "m[1]._buffers['running_var'][:] = 10.0 ** w.rank\n"
        "distributed.average_batch_norm_stats(m, w)\n"
        "assert m[0]._buffers['running_mean'].tolist() == [1.0, 2.0, 1.0]\n"
        "assert np.allclose(m[1]._buffers['running_var'], 37.0), m[1]._buffers['running_var']\n"
        "assert m[0]._buffers['num_batches_tracked'] == 0\n"
        "open(f'ok{w.rank}', 'w').close()\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = _run([*_mpiexec(), "-n", 3, sys.executable, script], timeout=120, env=env,
                cwd=tmp_path)
    _ok(proc)
    assert sorted(p.name for p in tmp_path.glob("ok*")) == ["ok0", "ok1", "ok2"]


def test_a_checkpoint_resumes_on_another_number_of_ranks(tmp_path):
    # global batch 12 throughout: 2 ranks x 6, 3 ranks x 4, 1 process x 12
    ckpt = tmp_path / "ckpt.h5"
    full = tmp_path / "full"
    proc, _ = _launch(2, full, "--n", 22, "--batch", 6, "--epochs", 2, "--checkpoint", ckpt,
                      "--keep-epoch", 1)
    _ok(proc)
    after_two = _weights(full, 0)
    ep1 = Path(f"{ckpt}.ep1")
    assert ep1.exists()
    # the same rank count resumes bit for bit
    same = tmp_path / "same"
    proc, _ = _launch(2, same, "--n", 22, "--batch", 6, "--epochs", 2, "--resume", ep1)
    _ok(proc)
    for k, v in _weights(same, 0).items():
        np.testing.assert_array_equal(v, after_two[k], err_msg=k)
    # three ranks and one process: the same to float rounding
    three = tmp_path / "three"
    proc, _ = _launch(3, three, "--n", 22, "--batch", 4, "--epochs", 2, "--resume", ep1)
    _ok(proc)
    _assert_ranks_identical(three, 3)
    _assert_close(_weights(three, 0), after_two)
    one, hist = _single_process("lenet", 22, 12, 2, resume=ep1)
    _assert_close(one, after_two)
    assert hist.epochs == 2


def _failure(tmp_path, n, mode, *extra):
    proc, seconds = _launch(n, tmp_path, "--n", 40, "--batch", 4, "--epochs", 3, "--fail", mode,
                            *extra, timeout=240)
    output = proc.stdout + proc.stderr
    stamp = re.search(r"fails \(\w+\) at ([\d.]+)", output)
    assert stamp, output
    after = time.time() - float(stamp.group(1))
    assert proc.returncode != 0, output
    assert not list(tmp_path.glob("weights_rank*.npz")), "a rank finished training"
    return output, after


def test_a_killed_rank_ends_the_run_with_an_error(tmp_path):
    output, after = _failure(tmp_path, 3, "kill")
    assert after < 60, f"the run went on {after:.0f} s after rank 1 was killed"
    assert re.search(r"signal 9|Killed|BAD TERMINATION", output), output


def test_a_raising_rank_aborts_every_rank(tmp_path):
    output, after = _failure(tmp_path, 2, "raise")
    assert after < 60
    assert "rank 1 of 2 failed with RuntimeError: injected failure" in output
    assert "aborting all 2 ranks" in output


def test_a_hanging_rank_makes_the_others_give_up(tmp_path):
    output, after = _failure(tmp_path, 2, "hang", "--timeout", 3)
    assert after < 60
    assert "rank 0 of 2 waited 3 s" in output and "aborting all 2 ranks" in output


def test_bench_distributed_quick(tmp_path):
    _mpiexec()  # skips without MPI
    js = tmp_path / "distributed.json"
    proc = _run([sys.executable, ROOT / "benchmarks" / "bench_distributed.py", "--quick",
                 "--json", js], timeout=300, cwd=ROOT)
    _ok(proc)
    assert "scaling efficiency" in proc.stdout
    result = json.loads(js.read_text())
    assert set(result["setups"]) == {"1 process x 1 thread", "1 process x 2 threads",
                                     "2 ranks x 1 thread (MPI)"}
    mpi = result["setups"]["2 ranks x 1 thread (MPI)"]
    assert mpi["ranks"] == 2 and mpi["batch_per_rank"] == 32
    assert mpi["allreduce_bytes"] == 4 * sum(
        p.data.size for p in nc.models.lenet5().parameters())
    assert {"mpi_scaling_efficiency", "comm_share", "allreduce_bare_ms"} <= set(result["summary"])


def test_train_lenet_example_under_mpiexec(tmp_path):
    """SPEC section 6's command: the header names the world and the shards, rank 0 alone
    reports and writes, and the weights are those of one process at the double batch."""
    args = ["--dataset", "digits", "--epochs", "1", "--no-progress", "--threads", "1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = _run([*_mpiexec(), "-n", 2, sys.executable, ROOT / "examples" / "train_lenet.py",
                 "--distributed", "--batch-size", 32, "--out", "d.h5", "--plot", "d.png", *args],
                timeout=300, env=env, cwd=tmp_path)
    _ok(proc)
    lines = proc.stdout.strip().splitlines()
    assert "distributed: world size 2, global batch 64 = 2 x 32" in proc.stdout
    assert len([ln for ln in lines if re.match(r"  rank [01]/2: rows ", ln)]) == 2
    assert "rank 1/2: rows 32-63 of each global batch of 64, 719 of 1438" in proc.stdout
    assert proc.stdout.count("test accuracy:") == 1 and lines[-1].startswith("test accuracy:")
    assert proc.stdout.count("data set:") == 1
    assert (tmp_path / "d.h5").exists() and (tmp_path / "d.png").exists()
    single = _run([sys.executable, ROOT / "examples" / "train_lenet.py", "--batch-size", 64,
                   "--out", "s.h5", "--plot", "s.png", *args], timeout=300, env=env,
                  cwd=tmp_path)
    _ok(single)
    assert nc.load_state(tmp_path / "d.h5")[2]["world_size"] == 2
    _assert_close(nc.load(tmp_path / "d.h5").state_dict(),
                  nc.load(tmp_path / "s.h5").state_dict(), rtol=1e-4, atol=1e-5)


class _OneRank:
    """Stands in for a World of one rank: reductions leave their buffer as it is."""

    size, rank = 1, 0

    def allreduce_(self, buf, op="sum", what=""):
        return buf


@pytest.mark.parametrize("layer, shape", [
    (lambda: nc.nn.BatchNorm2d(3), (5, 3, 4, 6)),
    (lambda: nc.nn.BatchNorm2d(3, affine=False), (4, 3, 2, 2)),
    (lambda: nc.nn.BatchNorm1d(4), (6, 4)),
    (lambda: nc.nn.BatchNorm1d(4, momentum=0.3), (3, 4, 5)),
])
def test_sync_batch_norm_on_one_rank_is_batch_norm(layer, shape):
    # The synchronised forward/backward written with NumPy sums against the layer's kernels.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float64)
    dy = rng.standard_normal(shape)
    plain, synced = layer().astype(np.float64), layer().astype(np.float64)
    for m in (plain, synced):
        if m.weight is not None:
            m.weight.data[:] = rng.uniform(0.5, 2, m.weight.data.shape)
            m.bias.data[:] = rng.uniform(-1, 1, m.bias.data.shape)
    synced.load_state_dict(plain.state_dict())
    y_ref, dx_ref = plain.forward(x), plain.backward(dy)
    with distributed.sync_batch_norm(synced, _OneRank()):
        y, dx = synced.forward(x), synced.backward(dy)
    assert "forward" not in synced.__dict__  # the context put the class's methods back
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-9, atol=1e-12)
    for (k, a), b in zip(plain.state_dict().items(), synced.state_dict().values()):
        np.testing.assert_allclose(b, a, rtol=1e-12, err_msg=k)
    for p, q in zip(plain.parameters(), synced.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-10, atol=1e-12)
