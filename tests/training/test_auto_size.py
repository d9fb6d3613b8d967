"""`input.min_size=auto` / `model.anchors.sizes=auto`: the sizes chosen for hand-computed object
statistics, the config value `auto`, and check-data warning for the size a run would use."""

import json

import numpy as np
import pytest

from maskrcnn.cli import main
from maskrcnn.config import Config, ConfigError, set_value
from maskrcnn.training.auto_size import ObjectSizes, choose_anchor_sizes, choose_input_size, fill_auto_defaults
from maskrcnn.presets import get_preset


def objects(side: float, short: int, long: int, n: int = 10) -> ObjectSizes:
    return ObjectSizes(np.full(n, float(side)), np.full(n, float(short)), np.full(n, float(long)))


def test_typical_object_made_large():
    # 120-px objects in 400 x 600 images: 0.3 x S >= 96 first at S = 320 (288 gives 86.4)
    size, max_size, why = choose_input_size(objects(120, 400, 600), None)
    assert (size, max_size) == (320, round(320 * 1333 / 800))
    assert "median object 96 px" in why
    # a fixed max_size caps the long side: 320 / 600 x 1000 ... here 400 x 1000 images, max 500:
    # scale min(S / 400, 500 / 1000) stops at 0.5, so no S reaches 96 px and the cap (800) is taken
    size, max_size, why = choose_input_size(objects(120, 400, 1000), 500)
    assert (size, max_size) == (800, 500) and "capped at 800" in why


def test_small_objects_capped_at_twice_the_image():
    # 8-px objects in 256-px images: no size makes them 96 px; 2 x 256 = 512 is the cap
    size, _, why = choose_input_size(objects(8, 256, 256), None)
    assert size == 512 and "capped at 512" in why
    sizes, _ = choose_anchor_sizes(objects(8, 256, 256), 512, 853)  # 16 px at 512: anchors from 16
    assert sizes == (16, 32, 64, 128, 256)


def test_anchor_base_nearest_power_of_two_within_8_and_32():
    assert choose_anchor_sizes(objects(96, 400, 400), 400, 667)[0] == (32, 64, 128, 256, 512)
    assert choose_anchor_sizes(objects(5, 400, 400), 400, 667)[0] == (8, 16, 32, 64, 128)
    assert choose_anchor_sizes(objects(11, 400, 400), 400, 667)[0][0] == 8  # log2(11) = 3.46
    assert choose_anchor_sizes(objects(12, 400, 400), 400, 667)[0][0] == 16  # log2(12) = 3.58


def test_auto_is_a_config_value():
    cfg = Config()
    set_value(cfg, "input.min_size", "auto")
    set_value(cfg, "model.anchors.sizes", "auto")
    assert cfg.input.min_size == cfg.model.anchors.sizes == "auto"
    set_value(cfg, "input.min_size", 512)
    assert cfg.input.min_size == (512,)
    with pytest.raises(ConfigError, match="input.min_size"):
        set_value(cfg, "input.min_size", "big")
    effl0 = get_preset("maskrcnn_effl0_fpn")
    assert effl0.input.min_size == effl0.model.anchors.sizes == "auto"
    fill_auto_defaults(effl0)  # no training set (a preset's random weights): the defaults
    assert effl0.input.min_size == (800,) and effl0.model.anchors.sizes == (32, 64, 128, 256, 512)


def test_check_data_warns_at_the_size_a_run_uses(tmp_path, capsys):
    # 64 x 64 images with one 8 x 8 object each: auto picks 128 px (2x) and anchors from 16 px,
    # so the 16-px objects are not under the smallest anchor; at the default 800 px / 32-px
    # anchors they would not be either, but at a fixed 64 px they would (8 < 32)
    images = [{"id": i, "file_name": f"{i}.png", "height": 64, "width": 64} for i in (1, 2)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 8, 8], "area": 64.0, "iscrowd": 0,
             "segmentation": [[10, 10, 18, 10, 18, 18, 10, 18]]} for i in (1, 2)]  # fmt: skip
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    from PIL import Image

    for i in (1, 2):
        Image.new("RGB", (64, 64)).save(tmp_path / f"{i}.png")
    args = ["check-data", "--data", str(ann), "--images", str(tmp_path), "--out", str(tmp_path / "c")]
    assert main([*args, "--model", "maskrcnn_effl0_fpn"]) == 0
    out = capsys.readouterr().out
    assert "input.min_size=auto -> [128]" in out and "anchors.sizes=auto -> [16," in out
    assert "smaller than the smallest anchor" not in out
    assert main([*args, "--set", "input.min_size=[64]", "input.max_size=64"]) == 0
    assert "2 of 2 objects (100%) are smaller than the smallest anchor (32 px)" in capsys.readouterr().out


def test_budget_shrinks_an_unaffordable_size():
    from maskrcnn.training.auto_size import BudgetSizer

    cfg = Config()
    cfg.input.min_size, cfg.solver.ims_per_batch = (800,), 2
    said, saved = [], []
    sizer = BudgetSizer(cfg, num_images=45, say=said.append, save=lambda: saved.append(1))
    # 20 s per step, 1650 s left: 1650 / 20 x 2 / 45 = 3.67 passes; x sqrt(3.67 / 10) -> 484 -> 480
    assert sizer(20.0, 1650.0)
    assert cfg.input.min_size == (480,) and cfg.input.max_size == 800 and saved == [1]
    assert "800 -> 480" in said[0] and "3.7 passes" in said[0]
    # 10 passes or more, or no time left (the final evaluation's reserve): unchanged
    assert not sizer(7.0, 1650.0) and not sizer(7.0, -3.0) and cfg.input.min_size == (480,)
