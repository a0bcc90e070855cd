"""BatchNorm layers whose running statistics were never estimated (a randomly initialised or locally built network):
how to recognise them, and how to give them the statistics of some batches. Used by image fine-tunes
(`vision.ImageClassifier`) and by the backbone recommendation's feature worker (`engines.recommend.worker`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm


def estimate_missing_statistics(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Give every BatchNorm layer still at torch's initial statistics (running mean 0, variance 1: never estimated,
    as in a randomly initialised network) the statistics of `batches` (a cumulative average, one pass); the number
    of layers so filled in. Other layers and the model's mode are left as they were.

    NOTE: with the initial statistics, evaluation-mode BatchNorm is the identity, so a random-init EfficientNet is a
    bias-free, nearly linear map whose activations shrink about tenfold per stage (1e-9 at the head at 224 px): a
    random projection of the pixels. LogME and the probe then score how linearly separable the raw pixels are, and
    on digits ranked such a network above ImageNet ones. Training from scratch normalises with batch statistics,
    which these estimates stand for (batch normalisation's population statistics, Ioffe & Szegedy 2015, 3.1)."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    missing = [module for module in model.modules() if isinstance(module, _BatchNorm) and never_estimated(module)]
    if not missing:
        return 0
    saved = [(module, module.training, module.momentum) for module in missing]
    for module in missing:
        module.reset_running_stats()
        module.momentum = None  # NOTE: None = cumulative moving average: every batch weighs the same
        module.train()
    try:
        with torch.no_grad():
            for pixels in batches:
                model(pixels)
    finally:
        for module, training, momentum in saved:
            module.train(training)
            module.momentum = momentum
    return len(missing)


def never_estimated(module: _BatchNorm) -> bool:
    """Whether a BatchNorm layer still has torch's initial running statistics (mean 0, variance 1)."""
    mean, var = module.running_mean, module.running_var
    return (
        module.track_running_stats and mean is not None and var is not None
        and not mean.any() and bool((var == 1).all())
    )
