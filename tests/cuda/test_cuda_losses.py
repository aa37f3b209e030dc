"""Losses with device arrays: what runs on the device (CrossEntropyLoss with integer labels,
MSELoss, L1Loss; "mean"/"sum"), recorded through ``crit(pred, target).backward()`` too, and
a clear TypeError for the options and losses that run on host arrays only."""

import numpy as np
import pytest
from helpers import nc, ncu, rng

losses = nc.losses


def test_device_losses_with_a_recorded_target_and_scaled_gradients():
    r = rng(3)
    pred, target = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    for cls in (losses.MSELoss, losses.L1Loss):
        host, dev = cls(reduction="sum"), cls(reduction="sum")
        value = dev.forward(ncu.to_device(pred), ncu.to_device(target))
        np.testing.assert_allclose(value, host.forward(pred, target), rtol=1e-12)
        np.testing.assert_allclose(ncu.to_host(dev.backward(2.5)), host.backward(2.5),
                                   rtol=1e-12)
    logits, labels = r.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    host, dev = losses.CrossEntropyLoss(ignore_index=-1), losses.CrossEntropyLoss(ignore_index=-1)
    np.testing.assert_allclose(dev.forward(ncu.to_device(logits), ncu.to_device(labels)),
                               host.forward(logits, labels), rtol=1e-12)
    np.testing.assert_allclose(ncu.to_host(dev.backward(0.5)), host.backward(0.5), rtol=1e-12)


@pytest.mark.parametrize("crit, target, match", [
    (losses.CrossEntropyLoss(weight=np.ones(3)), "labels", "'weight' and 'label_smoothing'"),
    (losses.CrossEntropyLoss(label_smoothing=0.1), "labels", "'weight' and 'label_smoothing'"),
    (losses.CrossEntropyLoss(ignore_index=1), "labels", "ignore_index=1"),
    (losses.CrossEntropyLoss(reduction="none"), "labels", "reduction='none'"),
    (losses.CrossEntropyLoss(), "probs", "class-probability targets"),
    (losses.MSELoss(reduction="none"), "probs", "reduction='none'"),
    (losses.NLLLoss(), "labels", "host arrays only"),
    (losses.BCEWithLogitsLoss(), "probs", "host arrays only"),
    (losses.HuberLoss(), "probs", "host arrays only"),
    (losses.KLDivLoss(), "probs", "host arrays only"),
])
def test_host_only_options_raise_type_error_on_the_device(crit, target, match):
    x = ncu.to_device(np.zeros((2, 3)))
    t = ncu.to_device(np.array([0, 1]) if target == "labels" else np.full((2, 3), 0.5))
    with pytest.raises(TypeError, match=match):
        crit.forward(x, t)
    with pytest.raises(TypeError, match=match):
        crit(x, t)
