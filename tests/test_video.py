"""`maskrcnn predict CLIP.mp4`: an annotated clip with the same frames, one JSON line per frame."""

import csv
import json
import warnings

import av
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import maskrcnn
from maskrcnn.cli import main
from maskrcnn.structures import Instances
from maskrcnn.visualize import draw_instances
from maskrcnn.weights import save_weights


FPS, SECONDS, WIDTH, HEIGHT = 5, 2, 96, 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = maskrcnn.load_model("maskrcnn_r18_fpn", precision=None, min_size=64, max_size=96, num_classes=3,
                                    rpn_post_nms_top_n_test=50, box_detections_per_img=5,
                                    class_names=["__background__", "circle", "square"])
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(model, path)
    return path


def _frames():
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    background = np.stack([xs, ys, xs + ys], axis=-1).astype(np.uint8)  # smooth: codecs keep it
    for i in range(FPS * SECONDS):  # a square moving right
        frame = background.copy()
        frame[20:40, 3 * i:3 * i + 20] = (230, 60, 40)
        yield frame


def _write_clip(path):
    """A 2-second clip written with PyAV directly."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for frame in _frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def _read_frames(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_clip_in_annotated_clip_and_json_lines_out(tmp_path, weights, capsys):
    clip = tmp_path / "clip.mp4"
    _write_clip(clip)
    source = _read_frames(clip)
    assert len(source) == FPS * SECONDS
    code = main(["predict", str(clip), "--model", "maskrcnn_r18_fpn", "--weights", str(weights),
                 "--out", str(tmp_path / "out"), "--score-thresh", "0.0"])
    assert code == 0
    captured = capsys.readouterr()
    assert "frame/s" in captured.err  # the progress bar's rate
    annotated = _read_frames(tmp_path / "out" / "clip.mp4")
    assert len(annotated) == len(source) and annotated[0].shape == (HEIGHT, WIDTH, 3)
    lines = (tmp_path / "out" / "clip.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(len(source)))
    assert records[5]["time"] == pytest.approx(5 / FPS)
    assert sum(len(r["results"]) for r in records) > 0
    for record in records:
        for result in record["results"]:
            assert result["image_id"] == record["frame"] and result["category_id"] in (1, 2)
            assert len(result["bbox"]) == 4 and 0 <= result["score"] <= 1
            assert result["segmentation"]["size"] == [HEIGHT, WIDTH]
    # the output frames are the source frames with the JSON's detections drawn (up to encoding loss)
    first = _instances(records[0]["results"])
    assert first.masks.sum() > 20
    expected = np.asarray(draw_instances(torch.from_numpy(source[0]).permute(2, 0, 1) / 255.0, first)).astype(int)
    drawn = np.abs(expected - source[0]).max(-1) > 40  # (H, W) pixels the drawing changes
    assert drawn.sum() > 100
    to_expected = np.abs(annotated[0] - expected).mean(-1)[drawn]
    to_source = np.abs(annotated[0] - source[0].astype(int)).mean(-1)[drawn]
    assert (to_expected < to_source).mean() > 0.9  # encoding blurs thin lines and text a little


def _instances(results):
    boxes = torch.tensor([r["bbox"] for r in results]).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
    masks = np.stack([mask_utils.decode(r["segmentation"]) for r in results]).astype(bool)
    return Instances((HEIGHT, WIDTH), ("__background__", "circle", "square"), boxes=boxes,
                     scores=torch.tensor([r["score"] for r in results]),
                     labels=torch.tensor([r["category_id"] for r in results]), masks=torch.from_numpy(masks))

def test_unreadable_video_is_a_user_error(tmp_path, weights, capsys):
    clip = tmp_path / "broken.mp4"
    clip.write_bytes(b"not a video at all")
    code = main(["predict", str(clip), "--model", "maskrcnn_r18_fpn", "--weights", str(weights),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "broken.mp4: cannot open video" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*"))  # no partial outputs



def test_track_gives_each_result_an_id_and_sums_up_each_track(tmp_path, weights):
    """--track: every result carries the id of a track, and the CSV's rows add up to the json
    lines (frames seen, first and last frame of each id)."""
    clip = tmp_path / "clip.mp4"
    _write_clip(clip)
    code = main(["predict", str(clip), "--model", "maskrcnn_r18_fpn", "--weights", str(weights),
                 "--out", str(tmp_path / "out"), "--score-thresh", "0.3", "--track", "--track-buffer", "2"])
    assert code == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    seen = {}
    for record in records:
        ids = [r["track_id"] for r in record["results"]]
        assert all(isinstance(i, int) and i >= 1 for i in ids) and len(set(ids)) == len(ids)
        for i in ids:
            seen.setdefault(i, []).append(record["frame"])
    assert seen  # the random model finds something at 0.3 in 10 frames
    rows = list(csv.DictReader((tmp_path / "out" / "clip_tracks.csv").read_text().splitlines()))
    assert {int(r["track_id"]): (int(r["first_frame"]), int(r["last_frame"]), int(r["frames_seen"])) for r in rows} \
        == {i: (min(f), max(f), len(f)) for i, f in seen.items()}
    assert len(_read_frames(tmp_path / "out" / "clip.mp4")) == len(records)


def test_negative_track_buffer_is_a_user_error(tmp_path, weights, capsys):
    clip = tmp_path / "clip.mp4"
    _write_clip(clip)
    code = main(["predict", str(clip), "--model", "maskrcnn_r18_fpn", "--weights", str(weights),
                 "--out", str(tmp_path / "out"), "--track", "--track-buffer", "-1"])
    assert code == 2 and "--track-buffer -1" in capsys.readouterr().err
