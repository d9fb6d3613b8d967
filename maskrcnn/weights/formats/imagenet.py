"""ImageNet classification checkpoints in torchvision's ResNet / ResNeXt layout -> our trunk.

torchvision's `resnet*` / `resnext*` state dicts name the trunk as ours does (conv1, bn1,
layer1..4, downsample.0/1): the keys only gain the `backbone.trunk.` prefix. The classifier
`fc.*` is dropped; everything else of the detector (FPN, RPN, heads) keeps its initialisation.
"""

from __future__ import annotations

import torch

_TRUNK = "backbone.trunk."


def is_imagenet_resnet(state: dict) -> bool:
    """Whether `state` looks like a torchvision ImageNet ResNet / ResNeXt state dict (`conv1.weight`
    and `layer1.*` keys)."""
    return "conv1.weight" in state and any(str(k).startswith("layer1.") for k in state)


def convert_imagenet_resnet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trunk's tensors of an ImageNet ResNet state dict under our keys (`backbone.trunk.`
    prefix); the classifier `fc.*` and BatchNorm's `num_batches_tracked` dropped."""
    return {
        _TRUNK + key: value for key, value in state.items()
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked")
    }  # fmt: skip
