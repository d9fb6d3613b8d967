"""The one weight initialiser: the FPN, the RPN and every head fill their layers through it."""

from __future__ import annotations

from torch import nn

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
FILLS = {
    # convs followed by a ReLU: He et al.'s fill on fan-out (Detectron's MSRAFill)
    "msra": lambda weight, std: nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu"),
    # Caffe2's XavierFill, uniform with gain 1: FPN convs and fc layers
    "xavier": lambda weight, std: nn.init.kaiming_uniform_(weight, a=1),
    # output layers: small Gaussian weights so the first losses are near chance
    "normal": lambda weight, std: nn.init.normal_(weight, std=std),
}


def init_layers(module: nn.Module, fill: str, std: float = 0.01) -> None:
    """Fill the weights of every conv / deconv / linear layer in `module` (itself included) in
    module order, so a seed gives the same weights as before; biases become zero."""
    for layer in module.modules():
        if isinstance(layer, LAYERS):
            FILLS[fill](layer.weight, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
