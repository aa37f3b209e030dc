"""zero_grad() defers the zeroing: the first gradient after it overwrites (or becomes) the
gradient, later ones add; every reader sees the same values as with an eager zeroing."""

from __future__ import annotations

import numpy as np
import pytest

import nbconv as nc
from nbconv import nn, optim


def _net():
    nc.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 3))


def _grads(net):
    return [np.array(p.grad) for p in net.parameters()]


def _eager_reference(net, x, dy, steps):
    """Gradients after ``steps`` backward passes, zeroed eagerly by hand first."""
    for p in net.parameters():
        p.grad[...] = 0
    for _ in range(steps):
        net(x)
        net.backward(dy)
    return _grads(net)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_lazy_zero_grad_matches_eager_zeroing(steps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 5, 5))
    dy = rng.standard_normal((2, 3))
    a, b = _net().astype(np.float64), _net().astype(np.float64)
    want = _eager_reference(a, x, dy, steps)
    for p in b.parameters():
        p.grad[...] = 7.0  # stale values that zero_grad must hide
    b.zero_grad()
    for _ in range(steps):
        b(x)
        b.backward(dy)
    for got, w in zip(_grads(b), want):
        np.testing.assert_array_equal(got, w)


def test_zero_grad_reads_as_zeros_and_keeps_dtype_shape():
    net = _net()
    for p in net.parameters():
        p.grad[...] = 1.0
    opt = optim.SGD(net.parameters(), lr=0.1)
    opt.zero_grad()
    for p in net.parameters():
        assert p.grad.dtype == p.data.dtype and p.grad.shape == p.data.shape
        assert not p.grad.any()


def test_accumulate_grad_owned_adopts_only_matching_fresh_arrays():
    p = nn.Parameter(np.zeros((2, 3)), "w")
    before = p.grad
    p.zero_grad()
    g = np.ones((2, 3))
    p.accumulate_grad(g, owned=True)
    assert p.grad is g  # handed over: no copy
    p.accumulate_grad(np.ones((2, 3)), owned=True)
    np.testing.assert_array_equal(p.grad, 2.0)  # later gradients add
    assert before is not p.grad
    # not owned, another dtype, or a view: copied into the existing array
    for g, owned in [(np.ones((2, 3)), False), (np.ones((2, 3), np.float32), True),
                     (np.ones((2, 6))[:, ::2], True), (np.ones(3), True)]:
        keep = p.grad
        p.zero_grad()
        p.accumulate_grad(g, owned=owned)
        assert p.grad is keep
        np.testing.assert_array_equal(p.grad, np.broadcast_to(g, (2, 3)))


def test_training_with_lazy_zero_grad_matches_eager_training():
    """Five SGD-momentum steps: lazy zero_grad (the default) against eager zeroing by hand."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 2, 5, 5))
    y = rng.integers(0, 3, 4)
    runs = []
    for eager in (False, True):
        net = _net().astype(np.float64)
        opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        crit = nn.CrossEntropyLoss()
        for _ in range(5):
            if eager:
                for p in net.parameters():
                    p.grad[...] = 0
            else:
                opt.zero_grad()
            crit(net(x), y)
            net.backward(crit.backward())
            opt.step()
        runs.append([np.array(p.data) for p in net.parameters()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
