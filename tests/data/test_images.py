"""read_image: every Pillow mode ends as RGB in [0, 1], EXIF orientation applied."""

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.images import image_size, read_image
from maskrcnn.errors import ImageError


def test_rgb_values_and_layout(tmp_path):
    pixels = np.array([[[255, 0, 51], [0, 102, 0]]], np.uint8)  # (1, 2, 3)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    image = read_image(tmp_path / "x.png")
    assert image.shape == (3, 1, 2) and image.dtype == torch.float32
    assert torch.allclose(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    assert torch.allclose(image[:, 0, 1], torch.tensor([0.0, 0.4, 0.0]))


@pytest.mark.parametrize("mode, value, expected", [
    ("L", 51, 0.2), ("RGBA", (51, 51, 51, 0), 0.2), ("P", 0, 0.0), ("I;16", 65535, 1.0),
])
def test_other_modes_become_rgb(tmp_path, mode, value, expected):
    Image.new(mode, (3, 2), value).save(tmp_path / "x.png")
    image = read_image(tmp_path / "x.png")
    assert image.shape == (3, 2, 3)
    assert torch.allclose(image, torch.full_like(image, expected))


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    pixels = np.array([[0, 32896, 65535]], np.uint16)  # 32896 = 128 * 257
    Image.fromarray(pixels).save(tmp_path / "x.png")
    image = read_image(tmp_path / "x.png")
    assert torch.allclose(image[0, 0], torch.tensor([0.0, 128 / 255, 1.0]), atol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[0, 0] = 255  # white top-left pixel of a 4 wide x 2 high image
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    Image.fromarray(pixels).save(tmp_path / "x.jpg", exif=exif, quality=100)
    image = read_image(tmp_path / "x.jpg")
    assert image.shape == (3, 4, 2) and image_size(tmp_path / "x.jpg") == (4, 2)
    assert image[:, 0, 1].min() > 0.8  # clockwise: top-left goes to top-right
    assert image[:, 0, 0].max() < 0.2


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match=r"bad\.png: cannot decode image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(ImageError, match=r"nope\.png: image file not found"):
        read_image(tmp_path / "nope.png")
