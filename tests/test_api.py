"""load_model / predict / weights files: inputs of every kind, and checkpoints that do not fit."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import maskrcnn
from maskrcnn.weights.formats.torchvision import convert_torchvision
from maskrcnn.errors import CheckpointError, ImageError
from maskrcnn.weights import load_state, save_weights

# Few proposals and detections: the heads' cost grows with them, not with the image size.
TINY = {"min_size": 96, "max_size": 128, "num_classes": 4, "box_score_thresh": 0.0,
        "rpn_post_nms_top_n_test": 100, "box_detections_per_img": 10}


@pytest.fixture(scope="module")
def tiny():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return maskrcnn.load_model("maskrcnn_r18_fpn", precision=None, **TINY)


def test_random_weights_warn_and_are_seeded():
    with pytest.warns(UserWarning, match="seeded random weights"):
        a = maskrcnn.load_model("maskrcnn_r18_fpn", **TINY)
    with pytest.warns(UserWarning):
        b = maskrcnn.load_model("maskrcnn_r18_fpn", **TINY)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_every_input_kind_gives_the_same_instances(tiny, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    inputs = [str(tmp_path / "x.png"), tmp_path / "x.png", Image.fromarray(pixels), pixels, tensor]
    outs = [tiny.predict(x)[0] for x in inputs]
    for out in outs:
        assert out.image_size == (70, 90)
        assert out.masks.shape == (len(out), 70, 90) and out.masks.dtype == torch.bool
        torch.testing.assert_close(out.boxes, outs[0].boxes)
        torch.testing.assert_close(out.scores, outs[0].scores)
    batch = tiny.predict([pixels, pixels[:50]])
    assert [b.image_size for b in batch] == [(70, 90), (50, 90)]
    assert len(batch[0].label_names) == len(batch[0])


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16"])
def test_odd_png_modes_are_converted(tiny, tmp_path, mode):
    size = (64, 48)
    Image.new(mode, size, 200 if mode != "RGBA" else (200, 100, 50, 128)).save(tmp_path / "x.png")
    out = tiny.predict(tmp_path / "x.png")[0]
    assert out.image_size == (48, 64)


def test_exif_rotated_jpeg_is_predicted_upright(tiny, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees for display: stored 80x40 is shown 40x80
    Image.new("RGB", (80, 40), (10, 200, 30)).save(tmp_path / "r.jpg", exif=exif)
    out = tiny.predict(tmp_path / "r.jpg")[0]
    assert out.image_size == (80, 40)
    assert out.masks.shape[1:] == (80, 40)


def test_missing_and_corrupt_images(tiny, tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png: image file not found"):
        tiny.predict(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(ImageError, match=r"bad\.jpg: cannot decode image"):
        tiny.predict(tmp_path / "bad.jpg")
    with pytest.raises(ImageError, match=r"not \(3, H, W\)"):
        tiny.predict(torch.zeros(4, 10, 10))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_round_trip_keeps_config_and_outputs(tiny, tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    save_weights(tiny, path)
    loaded = maskrcnn.load_model("maskrcnn_r18_fpn", weights=path, precision=None)
    assert loaded.cfg.model.num_classes == 4 and loaded.cfg.input.min_size == (96,)
    image = torch.rand(3, 60, 80, generator=torch.Generator().manual_seed(1))
    a, b = tiny.predict(image)[0], loaded.predict(image)[0]
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.masks, b.masks)


def test_truncated_checkpoint_is_a_clear_error(tiny, tmp_path):
    for suffix in (".pt", ".safetensors"):
        path = tmp_path / f"w{suffix}"
        save_weights(tiny, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=rf"w\{suffix}: cannot read weights"):
            maskrcnn.load_model("maskrcnn_r18_fpn", weights=path)


def test_checkpoint_for_another_architecture_lists_the_keys(tiny, tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(tiny.state_dict(), path)  # a bare state dict: no config to rescue it
    with pytest.raises(CheckpointError) as info:
        maskrcnn.load_model("maskrcnn_r50_fpn", weights=path)
    text = str(info.value)
    r50 = maskrcnn.build_model(maskrcnn.presets.get_preset("maskrcnn_r50_fpn")).state_dict()
    ours = tiny.state_dict()
    missing = [k for k in r50 if k not in ours]
    mismatched = [k for k in r50 if k in ours and r50[k].shape != ours[k].shape]
    assert "r18.pt does not fit model 'maskrcnn_r50_fpn'" in text
    assert f"{len(missing)} missing keys: {missing[0]}" in text
    assert f"{len(mismatched)} shape mismatches: {mismatched[0]}: checkpoint" in text


def test_torchvision_v2_weights_do_not_fit_the_v1_preset():
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    state = convert_torchvision(maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict())
    model = maskrcnn.build_model(maskrcnn.presets.get_preset("maskrcnn_r50_fpn"))
    with pytest.raises(CheckpointError) as info:
        load_state(model, state, source="v2.pth")
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    assert "rpn.head.convs.1.conv.weight" in unexpected  # v2's second RPN conv
    assert f"{len(unexpected)} unexpected keys: {unexpected[0]}" in str(info.value)


def test_prepared_model_refuses_training_and_saving(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = maskrcnn.load_model("maskrcnn_r18_fpn", precision="bf16", **TINY)
    assert fast.backbone.trunk.layer1[0].conv1.weight.dtype == torch.bfloat16
    assert fast.roi_heads.box_head.cls_score.weight.dtype == torch.float32  # output layers
    with pytest.raises(RuntimeError, match="prepared for inference"):
        fast.train()
    with pytest.raises(ValueError, match=r"w\.pt: this model was prepared for inference"):
        save_weights(fast, tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        maskrcnn.load_model("maskrcnn_r18_fpn", precision="fp16", **TINY)
