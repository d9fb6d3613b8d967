"""Helpers shared by the issue-18 reliability tests (a module, not conftest, so tests import it)."""

import json
import re
import struct
import zlib

import numpy as np
from PIL import Image

# A ResNet-18 Mask R-CNN small enough for a few CPU iterations per second.
TINY_TRAIN = [
    "input.min_size=[64]", "input.max_size=64", "model.backbone.fpn_channels=32",
    "model.rpn.pre_nms_topk_train=100", "model.rpn.post_nms_topk_train=50",
    "model.rpn.batch_size_per_image=64", "model.box.batch_size_per_image=32",
    "model.box.fc_dim=64", "model.mask.conv_dims=[16]", "data.num_workers=0",
    "solver.ims_per_batch=1", "solver.warmup_iters=1", "solver.log_period=1",
]  # fmt: skip

# predict / eval options for the tiny weights: small images, every detection kept
SMALL = ["--set", "min_size=64", "--set", "max_size=96", "--set", "box_detections_per_img=5"]

PROGRESS = re.compile(r"^train: +\d+%\|")  # tqdm's bar, redrawn after each '\r'


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`maskrcnn ARGV` in this process -> (exit status, stdout, stderr)."""
    from maskrcnn.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, command: str, *expected: str) -> str:
    """stderr is one line 'maskrcnn COMMAND: error: ...' holding every `expected` text (besides
    the training progress bar)."""
    lines = [line for line in err.strip().splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"maskrcnn {command}: error: "), err
    for text in expected:
        assert text in lines[0], (text, err)
    return lines[0]


def write_png(path, height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def png_claiming_size(path, width: int, height: int):
    """A valid 1x1 PNG whose header claims `width` x `height` (Pillow reads only the header)."""
    write_png(path, 1, 1)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


def read_json(path):
    return json.loads(path.read_text())
