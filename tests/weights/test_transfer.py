"""Fine-tuning from torchvision's COCO Mask R-CNN layout into a dataset whose class 1 is "person".

The file is torchvision's own model (seeded random weights, BatchNorm statistics randomised so a
wrong mapping cannot pass), saved as torchvision saves it; the truth is torchvision's forward."""

import json

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.config import apply_overrides
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.errors import CheckpointError
from maskrcnn.model.detector import build_model
from maskrcnn.weights.transfer import init_from_weights
from maskrcnn.presets import get_preset

# Small enough for a few R50 iterations per second on 64 px images.
SMALL = [
    "input.min_size=[64]", "input.max_size=64", "model.rpn.pre_nms_topk_train=100",
    "model.rpn.post_nms_topk_train=50", "model.rpn.batch_size_per_image=64",
    "model.box.batch_size_per_image=32", "model.backbone.norm_eps=0.00001", "data.num_workers=0",
]  # fmt: skip
NAMES = ("__background__", "person", "balloon")  # balloon is no COCO class


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()  # COCO's 91 labels
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1), m.bias.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("tv") / "maskrcnn_resnet50_fpn_coco.pth"
    torch.save(tv.state_dict(), path)
    return path, tv


@pytest.fixture(scope="module")
def person_data(tmp_path_factory):
    """Synthetic shapes relabelled: circles are "person" (id 1), the rest "balloon" (id 2)."""
    root = tmp_path_factory.mktemp("persons")
    ann = write_synthetic_dataset(root, num_images=4, seed=0, size=64)
    data = json.loads(ann.read_text())
    data["categories"] = [{"id": 1, "name": "person"}, {"id": 2, "name": "balloon"}]
    for a in data["annotations"]:
        a["category_id"] = 1 if a["category_id"] == 1 else 2
    ann.write_text(json.dumps(data))
    return ann, root / "images"


def _person_model(seed=0):
    cfg = apply_overrides(get_preset("maskrcnn_r50_fpn"), SMALL)
    cfg.model.num_classes, cfg.model.class_names = 3, NAMES
    torch.manual_seed(seed)
    return build_model(cfg).eval()


def test_torchvision_coco_weights_start_a_person_model(torchvision_file):
    path, tv = torchvision_file
    model = _person_model()
    box = model.roi_heads.box_head
    before = {k: v.clone() for k, v in box.state_dict().items()}
    report = init_from_weights(model, str(path))
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        feats, tv_feats = model.backbone(x), list(tv.backbone(x).values())
        for ours, theirs in zip(feats, tv_feats):  # trunk + FPN, P2..P6
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-3)  # |features| up to ~50
        obj, _ = model.rpn.head(feats[:1])
        tv_obj = tv.rpn.head(tv_feats[:1])[0][0]  # (1, A, H, W)
        torch.testing.assert_close(obj[0], tv_obj.permute(0, 2, 3, 1).reshape(1, -1), rtol=1e-4, atol=1e-5)
        pooled = torch.randn(5, 256, 7, 7)
        hidden = box.features(pooled)
        torch.testing.assert_close(hidden, tv.roi_heads.box_head(pooled), rtol=1e-4, atol=1e-5)
        scores, deltas = box.cls_score(hidden), box.bbox_pred(hidden)
        tv_scores, tv_deltas = tv.roi_heads.box_predictor(hidden)
        fresh_scores = hidden @ before["cls_score.weight"].T + before["cls_score.bias"]
        fresh_deltas = hidden @ before["bbox_pred.weight"].T + before["bbox_pred.bias"]
        mask_in = torch.randn(3, 256, 14, 14)
        logits = model.roi_heads.mask_head(mask_in)
        tv_logits = tv.roi_heads.mask_predictor(tv.roi_heads.mask_head(mask_in))
    assert scores.shape == (5, 3) and deltas.shape == (5, 12) and logits.shape == (3, 3, 28, 28)
    # COCO's background (label 0) and person (label 1) rows, copied by name
    torch.testing.assert_close(scores[:, :2], tv_scores[:, :2])
    torch.testing.assert_close(deltas[:, :8], tv_deltas[:, :8])
    torch.testing.assert_close(logits[:, :2], tv_logits[:, :2], rtol=1e-4, atol=1e-5)
    # balloon: no COCO row, the preset's initialisation
    torch.testing.assert_close(scores[:, 2], fresh_scores[:, 2])
    torch.testing.assert_close(deltas[:, 8:], fresh_deltas[:, 8:])
    assert not torch.allclose(scores[:, 2], tv_scores[:, 2])
    assert report.shared_classes == ("__background__", "person")
    assert len(report.copied) == 6 and not report.reinitialised and not report.new and not report.unused
    assert len(report.loaded) + 6 == len([k for k in model.state_dict() if "num_batches" not in k])


def test_fine_tune_20_iterations_lowers_the_loss(torchvision_file, person_data, tmp_path, capsys):
    path, _ = torchvision_file
    ann, images = person_data
    out = tmp_path / "run"
    argv = ["train", "--model", "maskrcnn_r50_fpn", "--weights", str(path), "--data", str(ann),
            "--images", str(images), "--out", str(out), "--set", *SMALL, "solver.max_iter=20",
            "solver.base_lr=0.005", "solver.clip_grad_norm=1.0", "solver.warmup_iters=2",
            "solver.log_period=1", "model.backbone.freeze_at=5", "solver.ims_per_batch=1",
            "solver.checkpoint_period=100"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"initial weights: {path}" in printed
    assert f"  {'copied by name':<18}{6:>5} tensors  (rows of: __background__, person)" in printed
    assert "(model.weights" not in printed and f"weights: {path}" in (out / "config.yaml").read_text()
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 20
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_r50_weights_into_r18_fail_listing_shapes_and_train_nothing(torchvision_file, person_data, tmp_path, capsys):
    path, _ = torchvision_file
    ann, images = person_data
    out = tmp_path / "run"
    argv = ["train", "--model", "maskrcnn_r18_fpn", "--weights", str(path), "--data", str(ann),
            "--images", str(images), "--out", str(out), "--set", *SMALL, "solver.max_iter=2"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit model 'maskrcnn_r18_fpn'" in err
    # the first trunk keys, with both shapes (R50 bottleneck 1x1 vs R18 basic-block 3x3)
    assert "backbone.trunk.layer1.0.conv1.weight: file (64, 64, 1, 1) vs model (64, 64, 3, 3)" in err
    assert not out.exists()


def test_unrelated_state_dict_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointError, match="none of its 1 tensors fits model"):
        init_from_weights(_person_model(), str(path))


def test_file_class_names_from_config_or_known_coco_label_spaces():
    from maskrcnn.weights.transfer import file_class_names
    from maskrcnn.presets import COCO80_CLASS_NAMES, COCO_CLASS_NAMES

    key = "roi_heads.box_head.cls_score.weight"

    def cls(rows, **extra):
        return {key: torch.zeros(rows, 8), **extra}

    assert file_class_names(cls(91), None, key) == COCO_CLASS_NAMES  # torchvision's COCO ids
    assert file_class_names(cls(81), None, key) == COCO80_CLASS_NAMES
    keypoints = {"roi_heads.keypoint_head.deconv.weight": torch.zeros(8, 17, 4, 4)}
    assert file_class_names(cls(2, **keypoints), None, key) == ("__background__", "person")
    assert file_class_names(cls(2), None, key) is None
    assert file_class_names(cls(91), {"model": {"class_names": ["__background__", "cat"]}}, key) == ("__background__", "cat")


def test_keypoint_predictor_is_reinitialised_when_the_keypoint_count_differs(tmp_path):
    from maskrcnn.weights import save_weights

    tiny = ["model.box.fc_dim=64", "model.mask.enabled=false", "model.keypoint.enabled=true",
            "model.keypoint.conv_dims=[16,16]"]  # fmt: skip
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), tiny)
    cfg.model.num_classes, cfg.model.class_names = 2, ("__background__", "person")
    torch.manual_seed(0)
    save_weights(build_model(cfg), tmp_path / "k17.safetensors")
    cfg.model.keypoint.num_keypoints = 5
    torch.manual_seed(1)
    model = build_model(cfg)
    before = model.roi_heads.keypoint_head.deconv.weight.clone()
    report = init_from_weights(model, str(tmp_path / "k17.safetensors"))
    assert sorted(report.reinitialised) == ["roi_heads.keypoint_head.deconv.bias", "roi_heads.keypoint_head.deconv.weight"]
    assert torch.equal(model.roi_heads.keypoint_head.deconv.weight, before)
    assert not report.copied and not report.new  # same classes: the box predictor loads whole


def _tiny_mask_model(overrides, names, seed):
    cfg = apply_overrides(get_preset("maskrcnn_r18_fpn"), ["model.box.fc_dim=32", "model.mask.conv_dims=[8]",
                                                           "model.mask.mlp_dims=[16]", *overrides])  # fmt: skip
    cfg.model.num_classes, cfg.model.class_names = len(names), names
    torch.manual_seed(seed)
    return build_model(cfg)


@pytest.mark.parametrize("overrides", [["model.mask.head=mlp"], ["model.mask.class_agnostic=true"]],
                         ids=["mlp", "class_agnostic"])
def test_mask_variants_fine_tune_onto_other_class_names(overrides, tmp_path):
    """File classes (bg, person, cat) -> model classes (bg, dog, person): where the mask head's
    rows follow the classes (MLP: M*M rows per class) person's rows are copied by name and dog's
    keep their initialisation; a class-agnostic mask head's one mask loads whole."""
    from maskrcnn.weights import save_weights

    source = _tiny_mask_model(overrides, ("__background__", "person", "cat"), seed=0)
    save_weights(source, tmp_path / "src.safetensors")
    theirs = {k: v.clone() for k, v in source.state_dict().items()}
    model = _tiny_mask_model(overrides, ("__background__", "dog", "person"), seed=1)
    mine = {k: v.clone() for k, v in model.state_dict().items()}
    report = init_from_weights(model, str(tmp_path / "src.safetensors"))
    after = model.state_dict()
    key = "roi_heads.mask_head.logits.weight"
    if "model.mask.head=mlp" in overrides:
        m2 = 28 * 28  # rows of one class: its 28 x 28 mask logits
        assert theirs[key].shape[0] == 3 * m2
        torch.testing.assert_close(after[key][2 * m2:], theirs[key][m2:2 * m2], rtol=0, atol=0)  # person
        torch.testing.assert_close(after[key][:m2], theirs[key][:m2], rtol=0, atol=0)  # background
        torch.testing.assert_close(after[key][m2:2 * m2], mine[key][m2:2 * m2], rtol=0, atol=0)  # dog: as built
        assert key in report.copied
    else:
        assert after[key].shape[0] == 1
        torch.testing.assert_close(after[key], theirs[key], rtol=0, atol=0)
        assert key in report.loaded
    cls = "roi_heads.box_head.cls_score.weight"
    torch.testing.assert_close(after[cls][2], theirs[cls][1], rtol=0, atol=0)
    assert report.shared_classes == ("__background__", "person")
