"""`maskrcnn weights list`: every source with its facts and whether it is cached."""

from maskrcnn.cli import main
from maskrcnn.weights.registry import SOURCES


def test_list_shows_every_source_and_what_is_cached(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MASKRCNN_HOME", str(tmp_path))
    cached = SOURCES["torchvision/resnet18_imagenet"]
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "resnet18-f37072fd.pth").write_bytes(b"x")
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    blocks = {b.splitlines()[0]: b for b in out.split("\n\n")[1:]}
    assert set(blocks) == set(SOURCES)
    assert f"cached at {tmp_path / 'torchvision' / 'resnet18-f37072fd.pth'}" in blocks[cached.name]
    tv = blocks["torchvision/maskrcnn_resnet50_fpn_coco"]
    for text in ("framework     torchvision", "architecture  maskrcnn_r50_fpn",
                 "url           https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
                 "checksum      sha256 bf2d0c1e (prefix, as published)", "size          169.84 MB",
                 "license       BSD-3-Clause", "status        not cached"):  # fmt: skip
        assert text in tv
    assert "checksum      md5 f10217 (prefix, as published)" in blocks["detectron2/mask_rcnn_R_50_FPN_3x"]
    assert "size          unknown" in blocks["detectron2/mask_rcnn_R_50_FPN_3x"]
    assert "checked       outputs compared with detectron2's own Python" in blocks["detectron2/mask_rcnn_R_50_FPN_3x"]
    assert "checked       no: converted with detectron2's" in blocks["detectron2/mask_rcnn_X_101_32x8d_FPN_3x"]
    assert "checked       outputs compared with mmdetection 3.3.0's own Python" in blocks[
        "mmdetection/mask_rcnn_r50_fpn_1x_coco"]
    assert "checked       no: converted with mmdetection's" in blocks["mmdetection/mask_rcnn_r50_caffe_fpn_1x_coco"]
