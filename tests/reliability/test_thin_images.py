"""Issue 18, case 3: a very thin image (3000x1) resized to 0 pixels high made F.interpolate raise
and stopped `maskrcnn predict`, losing the results of the images already done (written only at
the end). Now the resize keeps at least 1 pixel, and results are streamed image by image."""

import pytest
import torch
import torch.nn.functional as F
from reliability_helpers import SMALL, read_json, run_cli, write_png

from maskrcnn.model.detector import resized_size


@pytest.mark.parametrize("h, w, min_size, max_size", [
    (480, 640, 800, 1333), (333, 500, 800, 1333), (427, 640, 600, 1000), (1, 3000, 800, 1333),
    (3, 2000, 96, 160), (3000, 1, 64, 96),
])
def test_resized_size_is_interpolates_size_but_never_zero(h, w, min_size, max_size):
    """Each side as F.interpolate(scale_factor, recompute) sizes it (torchvision's resize), or 1
    pixel where that would be 0 (interpolate refuses those: measured on a 1000-pixel stand-in)."""
    scale = min(min_size / min(h, w), max_size / max(h, w))

    def interpolated(side):
        if side * scale < 1:
            return 1
        return F.interpolate(torch.zeros(1, 1, side, 1000), scale_factor=scale,
                             recompute_scale_factor=True).shape[-2]

    assert resized_size(h, w, min_size, max_size) == (interpolated(h), interpolated(w))


def test_thin_image_is_predicted_like_any_other(tmp_path, tiny_weights, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    write_png(folder / "a.png", 40, 60)
    write_png(folder / "b_thin.png", 1, 3000)  # 64 / 1 capped by 96 / 3000: 0.03 px high before
    write_png(folder / "c_thin.png", 2000, 3, seed=1)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights,
                                folder, "--out", out, "--score-thresh", "0", *SMALL)
    assert (code, err) == (0, "")
    assert stdout.startswith("3 images, ")
    results = read_json(out / "results.json")
    assert {r["file_name"] for r in results} == {str(folder / n) for n in ("a.png", "b_thin.png", "c_thin.png")}
    thin = [r for r in results if r["file_name"].endswith("b_thin.png")]
    assert all(r["segmentation"]["size"] == [1, 3000] for r in thin)  # masks in the image's pixels
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png.png", "b_thin.png.png", "c_thin.png.png"]


def test_a_crash_mid_run_keeps_the_results_already_done(tmp_path, tiny_weights, capsys, monkeypatch):
    """Whatever stops a run (here an unexpected error at the 2nd image), results.json holds the
    images done before it, and the message is one line with the path of the traceback's log."""
    from maskrcnn.commands import predict

    load = predict._load_predictor

    def failing_on_second_image(args):
        run, category_ids = load(args)
        calls = []

        def maybe_fail(image):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("something nobody foresaw")
            return run(image)
        return maybe_fail, category_ids

    monkeypatch.setattr(predict, "_load_predictor", failing_on_second_image)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        write_png(folder / f"{i}.png", 40, 50, seed=i)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "predict", "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights,
                           folder, "--out", out, "--score-thresh", "0", *SMALL)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    prefix = "maskrcnn predict: internal error: RuntimeError: something nobody foresaw (traceback in "
    assert lines[0].startswith(prefix)
    log = lines[0][len(prefix):].split(";")[0]
    assert "RuntimeError: something nobody foresaw" in open(log).read()  # the traceback is kept
    results = read_json(out / "results.json")
    assert results and {r["file_name"] for r in results} == {str(folder / "0.png")}
    assert [p.name for p in out.glob("*.png")] == ["0.png.png"]
    assert not (out / "results.json.partial").exists()
