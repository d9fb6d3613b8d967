"""detectron2 checkpoints -> our model and config.

The checkpoints are synthetic, with exactly the keys and shapes of detectron2's model-zoo Mask
R-CNN R50-FPN / X101-32x8d-FPN (`BasicStem`, `BottleneckBlock` with `shortcut`, `FPN` with
`fpn_lateral{2..5}` / `fpn_output{2..5}`, `StandardRPNHead`, `FastRCNNConvFCHead` fc1/fc2,
`FastRCNNOutputLayers`, `MaskRCNNConvUpsampleHead`), written out here from detectron2's module
definitions rather than from our model, and pickled as the model zoo ships them."""

import pickle

import numpy as np
import pytest
import torch

from maskrcnn import load_model
from maskrcnn.weights.formats.detectron2 import detectron2_config
from maskrcnn.errors import CheckpointError
from maskrcnn.presets import COCO80_CLASS_NAMES

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def d2_mask_rcnn_state(depth=50, groups=1, width=64, num_classes=80, random=True) -> dict[str, np.ndarray]:
    """detectron2's GeneralizedRCNN state dict (ResNet + FPN + StandardROIHeads), float32;
    random values (seed 0) or zeros where only the keys and shapes matter."""
    rng = np.random.default_rng(0)

    def make(*shape):
        return rng.standard_normal(shape, dtype=np.float32) if random else np.zeros(shape, np.float32)

    def conv(name, cout, cin, k, norm=True):
        out = {f"{name}.weight": make(cout, cin, k, k)}
        if norm:  # FrozenBatchNorm2d buffers
            out.update({f"{name}.norm.weight": make(cout), f"{name}.norm.bias": make(cout),
                        f"{name}.norm.running_mean": make(cout),
                        f"{name}.norm.running_var": np.abs(make(cout)) + 0.5})  # fmt: skip
        return out

    bu = "backbone.bottom_up"
    sd = conv(f"{bu}.stem.conv1", 64, 3, 7)
    cin, bottleneck = 64, groups * width
    for i, n in enumerate(BLOCKS[depth]):
        cout = 256 * 2**i
        for j in range(n):
            p = f"{bu}.res{i + 2}.{j}"
            if cin != cout:
                sd.update(conv(f"{p}.shortcut", cout, cin, 1))
            sd.update({**conv(f"{p}.conv1", bottleneck, cin, 1),
                       **conv(f"{p}.conv2", bottleneck, bottleneck // groups, 3),
                       **conv(f"{p}.conv3", cout, bottleneck, 1)})  # fmt: skip
            cin = cout
        bottleneck *= 2
    for level, c in zip(range(2, 6), (256, 512, 1024, 2048)):
        sd.update({f"backbone.fpn_lateral{level}.weight": make(256, c, 1, 1), f"backbone.fpn_lateral{level}.bias": make(256),
                   f"backbone.fpn_output{level}.weight": make(256, 256, 3, 3), f"backbone.fpn_output{level}.bias": make(256)})  # fmt: skip
    r = "proposal_generator.rpn_head"
    sd.update({f"{r}.conv.weight": make(256, 256, 3, 3), f"{r}.conv.bias": make(256),
               f"{r}.objectness_logits.weight": make(3, 256, 1, 1), f"{r}.objectness_logits.bias": make(3),
               f"{r}.anchor_deltas.weight": make(12, 256, 1, 1), f"{r}.anchor_deltas.bias": make(12)})  # fmt: skip
    k = num_classes
    sd.update({"roi_heads.box_head.fc1.weight": make(1024, 256 * 7 * 7), "roi_heads.box_head.fc1.bias": make(1024),
               "roi_heads.box_head.fc2.weight": make(1024, 1024), "roi_heads.box_head.fc2.bias": make(1024),
               "roi_heads.box_predictor.cls_score.weight": make(k + 1, 1024),  # background LAST
               "roi_heads.box_predictor.cls_score.bias": make(k + 1),
               "roi_heads.box_predictor.bbox_pred.weight": make(4 * k, 1024),  # no background
               "roi_heads.box_predictor.bbox_pred.bias": make(4 * k)})  # fmt: skip
    for i in range(1, 5):
        sd.update({f"roi_heads.mask_head.mask_fcn{i}.weight": make(256, 256, 3, 3),
                   f"roi_heads.mask_head.mask_fcn{i}.bias": make(256)})  # fmt: skip
    sd.update({"roi_heads.mask_head.deconv.weight": make(256, 256, 2, 2), "roi_heads.mask_head.deconv.bias": make(256),
               "roi_heads.mask_head.predictor.weight": make(k, 256, 1, 1), "roi_heads.mask_head.predictor.bias": make(k)})  # fmt: skip
    # 2019 model-zoo files also hold the pixel normalisation buffers
    sd["pixel_mean"] = np.array([103.53, 116.28, 123.675], np.float32).reshape(3, 1, 1)
    sd["pixel_std"] = np.ones((3, 1, 1), np.float32)
    return sd


@pytest.fixture(scope="module")
def r50_pkl(tmp_path_factory):
    state = d2_mask_rcnn_state()
    path = tmp_path_factory.mktemp("d2") / "model_final_f10217.pkl"
    with open(path, "wb") as f:  # protocol 2, as Python 2 era pickles: bytes via _codecs.encode
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f, protocol=2)
    return path, state


def test_model_zoo_pickle_loads_with_its_config_and_label_order(r50_pkl):
    path, d2 = r50_pkl
    model = load_model("maskrcnn_r50_fpn", weights=str(path), precision=None)
    cfg, sd = model.cfg, model.state_dict()
    assert cfg.name == "detectron2_r50_fpn" and cfg.model.backbone.stride_in_1x1
    assert (cfg.input.channel_order, cfg.input.pixel_scale, cfg.input.pixel_std) == ("BGR", 255.0, (1.0, 1.0, 1.0))
    assert cfg.model.roi_align.aligned and cfg.model.class_names == COCO80_CLASS_NAMES
    assert model.backbone.trunk.layer2[0].conv1.stride == (2, 2)  # MSRA: stride in the 1x1

    def same(ours, theirs):
        assert torch.equal(sd[ours], torch.from_numpy(d2[theirs])), ours

    same("backbone.trunk.conv1.weight", "backbone.bottom_up.stem.conv1.weight")
    same("backbone.trunk.bn1.running_var", "backbone.bottom_up.stem.conv1.norm.running_var")
    same("backbone.trunk.layer3.5.conv2.weight", "backbone.bottom_up.res4.5.conv2.weight")
    same("backbone.trunk.layer4.0.bn3.bias", "backbone.bottom_up.res5.0.conv3.norm.bias")
    same("backbone.trunk.layer1.0.downsample.0.weight", "backbone.bottom_up.res2.0.shortcut.weight")
    same("backbone.trunk.layer1.0.downsample.1.running_mean", "backbone.bottom_up.res2.0.shortcut.norm.running_mean")
    same("backbone.fpn.lateral.0.conv.weight", "backbone.fpn_lateral2.weight")
    same("backbone.fpn.output.3.conv.bias", "backbone.fpn_output5.bias")
    same("rpn.head.convs.0.conv.weight", "proposal_generator.rpn_head.conv.weight")
    same("rpn.head.deltas.weight", "proposal_generator.rpn_head.anchor_deltas.weight")
    same("roi_heads.box_head.fcs.1.weight", "roi_heads.box_head.fc2.weight")
    same("roi_heads.mask_head.convs.3.conv.weight", "roi_heads.mask_head.mask_fcn4.weight")
    same("roi_heads.mask_head.deconv.weight", "roi_heads.mask_head.deconv.weight")
    cls, d2_cls = sd["roi_heads.box_head.cls_score.weight"], torch.from_numpy(d2["roi_heads.box_predictor.cls_score.weight"])
    assert torch.equal(cls[0], d2_cls[80]) and torch.equal(cls[1:], d2_cls[:80])  # background first
    deltas = sd["roi_heads.box_head.bbox_pred.weight"]
    assert torch.equal(deltas[4:], torch.from_numpy(d2["roi_heads.box_predictor.bbox_pred.weight"]))
    assert not deltas[:4].any()
    logits = sd["roi_heads.mask_head.logits.bias"]
    assert torch.equal(logits[1:], torch.from_numpy(d2["roi_heads.mask_head.predictor.bias"])) and logits[0] == 0


def test_trainer_checkpoint_pth_loads_weights_only(r50_pkl, tmp_path):
    _, d2 = r50_pkl
    path = tmp_path / "model_0004999.pth"  # what detectron2's trainer writes
    torch.save({"model": {k: torch.from_numpy(v) for k, v in d2.items()}, "iteration": 4999}, path)
    model = load_model("maskrcnn_r50_fpn", weights=str(path), precision=None, min_size=64, max_size=64)
    assert model.cfg.name == "detectron2_r50_fpn"
    assert torch.equal(model.state_dict()["rpn.head.objectness.bias"],
                       torch.from_numpy(d2["proposal_generator.rpn_head.objectness_logits.bias"]))
    (inst,) = model.predict(torch.rand(3, 48, 64))  # the converted config runs end to end
    assert inst.boxes.shape[1] == 4 and inst.masks.shape[1:] == (48, 64)


def test_x101_32x8d_config_from_shapes():
    state = {k: torch.from_numpy(v) for k, v in d2_mask_rcnn_state(101, 32, 8, num_classes=3, random=False).items()}
    cfg = detectron2_config(state)
    b = cfg.model.backbone
    assert (cfg.name, b.depth, b.groups, b.width_per_group) == ("detectron2_x101_32x8d_fpn", 101, 32, 8)
    assert not b.stride_in_1x1 and cfg.input.pixel_std == (57.375, 57.120, 58.395)
    assert cfg.model.num_classes == 4 and cfg.model.class_names == ()


def test_c4_and_unknown_keys_are_refused(tmp_path):
    # detectron2's C4: the ResNet is the backbone itself, conv5 runs per RoI in roi_heads.res5
    state = {"backbone.stem.conv1.weight": torch.zeros(64, 3, 7, 7),
             "backbone.res4.5.conv3.weight": torch.zeros(1024, 256, 1, 1),
             "proposal_generator.rpn_head.conv.weight": torch.zeros(1024, 1024, 3, 3),
             "roi_heads.res5.0.conv1.weight": torch.zeros(512, 1024, 1, 1)}  # fmt: skip
    path = tmp_path / "c4.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match="C4 checkpoint"):
        load_model("maskrcnn_r50_fpn", weights=str(path))
    state = {k: torch.from_numpy(v) for k, v in d2_mask_rcnn_state(num_classes=1, random=False).items()}
    state["roi_heads.keypoint_head.conv_fcn1.weight"] = torch.zeros(512, 256, 3, 3)
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match="no layer for: roi_heads.keypoint_head.conv_fcn1.weight"):
        load_model("maskrcnn_r50_fpn", weights=str(path))
