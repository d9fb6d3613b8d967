"""A torchvision ImageNet classifier's state dict initialises our trunk exactly."""

import torch
from torchvision.models import resnet18

from maskrcnn.config import apply_overrides
from maskrcnn.model.detector import build_model
from maskrcnn.weights.transfer import init_from_weights
from maskrcnn.presets import get_preset


def test_resnet18_imagenet_layout_initialises_the_r18_trunk_exactly(tmp_path):
    torch.manual_seed(0)
    tv = resnet18(weights=None).eval()
    with torch.no_grad():  # trained-like statistics: the defaults (0, 1) would match anything
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1), m.bias.normal_(0, 0.1)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(tv.state_dict(), path)
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), ["model.box.fc_dim=64", "model.mask.conv_dims=[16]"])
    model = build_model(cfg).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = init_from_weights(model, str(path))

    trunk = model.backbone.trunk.state_dict()
    expected = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.") and "num_batches" not in k}
    assert set(trunk) == set(expected)
    for key, value in expected.items():
        assert torch.equal(trunk[key], value), key
    # the rest keeps the preset's initialisation; the classifier is dropped
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("backbone.trunk."))
    assert len(report.loaded) == len(expected) and not report.unused
    assert set(report.new) == {k for k in after if not k.startswith("backbone.trunk.")}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        c5 = model.backbone.trunk(x)[-1]
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
    torch.testing.assert_close(c5, ref, rtol=1e-4, atol=1e-5)
