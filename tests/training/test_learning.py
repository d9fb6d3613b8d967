"""The model learns: a tiny Mask R-CNN overfits 8 synthetic images in a few dozen iterations."""

import json

import pytest

from maskrcnn import load_model
from maskrcnn.commands.demo import demo_config
from maskrcnn.config import apply_overrides
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.evaluation.evaluator import evaluate_model
from maskrcnn.training.trainer import train

ITERS = 150


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    ann = write_synthetic_dataset(root / "data", num_images=8, seed=0, size=128)
    cfg = demo_config(ITERS, ann)
    apply_overrides(cfg, ["solver.warmup_iters=20", f"solver.steps=[{ITERS - 15}]", "solver.log_period=5"])
    train(cfg, root / "run", device="cpu")
    return root, ann


def test_loss_halves(run):
    root, _ = run
    rows = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-2:]) / 2
    assert last <= 0.5 * first, f"loss {first:.3f} -> {last:.3f}"


def test_mask_ap_on_the_training_images(run):
    root, ann = run
    model = load_model("maskrcnn_r18_fpn", weights=root / "run" / "model_final.pt")
    metrics = evaluate_model(model, ann.parent / "images", ann, root / "eval")
    assert metrics["segm/AP"] >= 0.5, metrics
