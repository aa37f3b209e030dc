"""The ``nbconv.models`` builders the whole-network benchmarks time, with their input sizes.

Not a benchmark itself.  ``bench_models.py`` and ``bench_inference.py`` share this table so that
both time the same networks on the same inputs.  It imports nbconv only, not ``_common`` (which
imports PyTorch first): ``bench_inference.py``'s nbconv workers must not load PyTorch.
"""

from __future__ import annotations

from nbconv import models

#: name -> (builder, input shape (C, H, W), bench_models.py's default batch sizes)
MODELS = {
    "lenet5": (lambda: models.lenet5(activation="relu"), (1, 28, 28), (64, 256)),
    "simple_convnet": (lambda: models.simple_convnet(input_dim=(3, 32, 32)), (3, 32, 32),
                       (32, 128)),
    "alexnet": (lambda: models.alexnet(in_channels=3), (3, 32, 32), (32, 128)),
    "vgg11": (lambda: models.vgg11(in_channels=3), (3, 32, 32), (32, 128)),
    "nin": (lambda: models.nin(in_channels=3), (3, 32, 32), (32, 128)),
    "googlenet": (lambda: models.googlenet(in_channels=3), (3, 32, 32), (32, 128)),
    "resnet18": (lambda: models.resnet18(in_channels=3), (3, 32, 32), (32, 128)),
}
if hasattr(models, "zfnet"):
    MODELS["zfnet"] = (lambda: models.zfnet(in_channels=3), (3, 32, 32), (32, 128))
if hasattr(models, "seed_net"):
    MODELS["seed_net"] = (models.seed_net, (1, 28, 28), (64, 256))
