"""Issue 25, cases 7 and 9: every numeric config field has a range (maskrcnn/config_ranges.py),
checked with the field's name before any run folder is created."""

import dataclasses
import typing

import pytest
from hostile_checks import assert_refused, train_argv

from maskrcnn.config import Config, apply_overrides
from maskrcnn.config_ranges import check_ranges, range_problem
from maskrcnn.errors import ConfigError
from maskrcnn.presets import PRESETS, get_preset


@pytest.mark.parametrize("override, expected", [
    ("model.mask.resolution=0", "model.mask.resolution=0 is out of range: must be at least 1"),
    ("input.min_size=[-1]", "input.min_size=[-1] is out of range: every value must be at least 1"),
    ("model.rpn.nms_thresh=1.5", "model.rpn.nms_thresh=1.5 is out of range: must be between 0 and 1"),
    ("input.pixel_std=[0.2,0,0.2]", "input.pixel_std=[0.2, 0.0, 0.2] is out of range: every value must be greater than 0"),
])  # fmt: skip
def test_out_of_range_value_is_refused_before_the_run_folder(capsys, tmp_path, shapes, override, expected):
    ann, images = shapes
    out = tmp_path / "run"
    assert_refused(capsys, tmp_path, "train", train_argv(str(ann), str(images), out, override),
                   f"--set: {expected}")
    assert not out.exists()


def _numeric_fields(cls, prefix=""):
    """Dotted names of every int / float / tuple-of-numbers field of the config tree."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _numeric_fields(hint, f"{prefix}{f.name}.")
        elif hint in (int, float) or (typing.get_origin(hint) is tuple
                                       and typing.get_args(hint)[0] in (int, float)):
            yield f"{prefix}{f.name}"


def test_every_numeric_field_refuses_a_negative_value():
    names = list(_numeric_fields(Config))
    assert len(names) > 80  # the walk reached every section
    for name in names:
        default = _get(Config(), name)
        value = [-1] * len(default) if isinstance(default, tuple) and len(default) else -1
        assert range_problem(name, value) is not None, name
        with pytest.raises(ConfigError, match=rf"--set: {name}=\[?-1"):
            apply_overrides(Config(), [f"{name}={value}"])


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_every_preset_is_in_range():
    for name in PRESETS:
        check_ranges(get_preset(name), source=name)


def test_range_check_of_a_config_built_in_code(tmp_path):
    from maskrcnn.training.trainer import train

    cfg = get_preset("maskrcnn_r18_fpn")
    cfg.model.mask.resolution = 0
    with pytest.raises(ConfigError, match=r"config: model.mask.resolution=0 is out of range"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
