"""The training loop: non-finite loss safety, gradient clipping, AMP, metrics.jsonl, best model."""

import json

import pytest
import torch
from torch import nn

from maskrcnn.config import Config, apply_overrides
from maskrcnn.data.loader import build_train_loader
from maskrcnn.engine import checkpoint as ckpt
from maskrcnn.engine.solver import build_optimizer, build_scheduler, lr_factor
from maskrcnn.engine.train_log import TrainLog
from maskrcnn.engine.trainer import (CheckpointHook, EvalHook, LogHook, NonFiniteLossError,
                                     Trainer)  # fmt: skip
from maskrcnn.errors import CheckpointError
from maskrcnn.fileio import torch_save_atomic
from maskrcnn.zoo import get_preset

# A Mask R-CNN small enough for a few CPU iterations per second.
TINY = [
    "input.min_size=[64]", "input.max_size=64", "model.num_classes=4",
    "model.backbone.fpn_channels=32", "model.rpn.pre_nms_topk_train=100",
    "model.rpn.post_nms_topk_train=50", "model.rpn.batch_size_per_image=64",
    "model.box.batch_size_per_image=32", "model.box.fc_dim=64", "model.mask.conv_dims=[16]",
]  # fmt: skip


def tiny_maskrcnn_cfg(*overrides: str) -> Config:
    return apply_overrides(get_preset("maskrcnn_r18_fpn"), TINY + list(overrides))


def toy_samples(n: int, size: int = 64) -> list:
    """n images with one or two rectangles each; labels in 1..3."""
    gen = torch.Generator().manual_seed(0)
    samples = []
    for i in range(n):
        image = torch.rand(3, size, size, generator=gen) * 0.2
        boxes, masks = [], []
        for j in range(1 + i % 2):
            x, y = 4 + 24 * j + i, 6 + 20 * j
            mask = torch.zeros(size, size, dtype=torch.uint8)
            mask[y:y + 20, x:x + 24] = 1
            image[:, y:y + 20, x:x + 24] += 0.7
            boxes.append([x, y, x + 24, y + 20])
            masks.append(mask)
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32),
                  "labels": torch.tensor([1 + (i + j) % 3 for j in range(len(boxes))]),
                  "masks": torch.stack(masks)}  # fmt: skip
        samples.append((image, target))
    return samples


def make_trainer(model, cfg, samples, hooks=()) -> Trainer:
    opt = build_optimizer(model, cfg.solver)
    loader = build_train_loader(samples, cfg.solver.ims_per_batch, cfg.solver.seed)
    return Trainer(model, opt, build_scheduler(opt, cfg.solver), loader, cfg,
                   torch.device("cpu"), hooks)  # fmt: skip


class NaNAt(nn.Module):
    """The real model, with `loss_mask` turned to NaN on the `at`-th call."""

    def __init__(self, model, at: int):
        super().__init__()
        self.model, self.at, self.calls, self.cfg = model, at, 0, model.cfg

    def forward(self, images, targets):
        losses = self.model(images, targets)
        self.calls += 1
        if self.calls == self.at:
            losses["loss_mask"] = losses["loss_mask"] * float("nan")
        return losses


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    from maskrcnn.model.detector import build_model

    cfg = tiny_maskrcnn_cfg("solver.ims_per_batch=2", "solver.base_lr=0.01")
    torch.manual_seed(0)
    model = NaNAt(build_model(cfg), at=3)
    saver = ckpt.Checkpointer(tmp_path, keep=5)
    last = tmp_path / "model_0000002.pt"
    written = {}  # the checkpoint's bytes right after it was written

    class Snapshot:
        def after_step(self, trainer):
            if trainer.iter == 2:
                written["bytes"] = last.read_bytes()

    hooks = [CheckpointHook(saver, period=2), Snapshot()]
    trainer = make_trainer(model, cfg, toy_samples(4), hooks)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.train(0, 6)
    msg = str(err.value)
    assert "iteration 3" in msg and "loss_mask=nan" in msg
    for name in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"):
        assert f"{name}=" in msg and f"{name}=nan" not in msg  # every loss, with its value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", last.name]
    # the failing step changed nothing: the weights are still those of the checkpoint
    saved = ckpt.load_checkpoint(last)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert last.read_bytes() == written["bytes"] and saver.last() == last


def test_resume_from_another_models_checkpoint_names_the_keys(tmp_path):
    from maskrcnn.model.detector import build_model

    four = tiny_maskrcnn_cfg("model.num_classes=4")
    source = make_trainer(build_model(four), four, toy_samples(1))
    torch_save_atomic(tmp_path / "four.pt", source.state_dict())
    three = tiny_maskrcnn_cfg("model.num_classes=3")
    trainer = make_trainer(build_model(three), three, toy_samples(1))
    with pytest.raises(CheckpointError) as err:
        trainer.load_state_dict(ckpt.load_checkpoint(tmp_path / "four.pt"), "four.pt")
    msg = str(err.value)
    # 4 classes vs 3: the classifier has one more row, the box and mask predictors one more class
    assert "four.pt" in msg and "shape mismatches" in msg
    assert "roi_heads.box_predictor.cls_score.weight: checkpoint (4, 64) vs model (3, 64)" in msg


class Quadratic(nn.Module):
    """loss = sum(w * c): gradient is exactly c, independent of w."""

    def __init__(self, coef):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(len(coef)))
        self.register_buffer("coef", torch.tensor(coef))
        self.cfg = Config()
        self.dtypes = []

    def forward(self, images, targets):
        x = torch.stack(images).flatten(1)[:, :1] @ torch.ones(1, 1)  # a matmul autocast can see
        self.dtypes.append(x.dtype)
        return {"loss_lin": (self.w * self.coef).sum() + 0 * x.float().sum()}


def _quadratic_trainer(*overrides):
    cfg = apply_overrides(Config(), ["solver.base_lr=1.0", "solver.momentum=0.0",
                                     "solver.weight_decay=0.0", "solver.warmup_iters=0",
                                     "solver.ims_per_batch=1", *overrides])  # fmt: skip
    model = Quadratic([3.0, 4.0])  # |grad| = 5
    samples = [(torch.zeros(3, 4, 4), {"boxes": torch.zeros(0, 4)})]
    return model, make_trainer(model, cfg, samples)


def test_gradient_clipping_rescales_to_max_norm():
    model, trainer = _quadratic_trainer("solver.clip_grad_norm=1.0")
    trainer.train(0, 1)
    # clipped gradient = (3, 4) / 5; SGD with lr 1: w = -g
    assert model.w.tolist() == pytest.approx([-0.6, -0.8], abs=1e-6)
    model, trainer = _quadratic_trainer()
    trainer.train(0, 1)
    assert model.w.tolist() == pytest.approx([-3.0, -4.0])


def test_bf16_autocast_on_cpu_keeps_fp32_weights():
    model, trainer = _quadratic_trainer("solver.amp=bf16")
    trainer.train(0, 2)
    assert model.dtypes == [torch.bfloat16] * 2
    assert model.w.dtype == torch.float32
    assert model.w.tolist() == pytest.approx([-6.0, -8.0])
    model, trainer = _quadratic_trainer()
    trainer.train(0, 1)
    assert model.dtypes == [torch.float32]


def test_metrics_jsonl_and_tensorboard(tmp_path):
    model, trainer = _quadratic_trainer("solver.warmup_iters=4", "solver.log_period=2")
    log = TrainLog(tmp_path, start_iter=0, max_iter=5)
    trainer.hooks = [LogHook(log, period=2)]
    trainer.train(0, 5)
    log.close()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [2, 4, 5]  # every 2 iterations and the last
    for r in records:
        # the lr used by iteration `iter` (1-based) is base_lr * factor(iter - 1)
        assert r["lr"] == pytest.approx(lr_factor(r["iter"] - 1, trainer.cfg.solver))
        assert set(r) == {"iter", "lr", "loss_lin", "loss", "time"} and r["time"] > 0
        assert r["loss"] == r["loss_lin"]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    # A resume from iteration 2 forgets what was logged after it (those iterations rerun).
    TrainLog(tmp_path, start_iter=2, max_iter=5).close()
    kept = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iter"] for line in kept] == [2]


def test_eval_hook_keeps_best_by_segm_ap(tmp_path):
    model, trainer = _quadratic_trainer()
    scores = iter([{"bbox/AP": 0.9, "segm/AP": 0.1}, {"bbox/AP": 0.1, "segm/AP": 0.4},
                   {"bbox/AP": 0.8, "segm/AP": 0.3}])  # fmt: skip
    log = TrainLog(tmp_path, start_iter=0, max_iter=6)
    trainer.hooks = [EvalHook(lambda m: next(scores), period=2, out_dir=tmp_path, log=log)]
    trainer.train(0, 6)
    best = ckpt.load_checkpoint(tmp_path / "model_best.pt")
    assert (best["iter"], best["metric"], best["value"]) == (4, "segm/AP", 0.4)
    # the weights of iteration 4: w = -4 * (3, 4) with lr 1 and no momentum
    assert best["model"]["w"].tolist() == pytest.approx([-12.0, -16.0])
    # a resumed run has to beat the stored best
    hook = EvalHook(lambda m: {"bbox/AP": 0.35}, period=2, out_dir=tmp_path, log=log)
    assert hook.best == 0.4


def test_rng_states_survive_a_checkpoint_file(tmp_path):
    import random

    import numpy as np

    from maskrcnn.engine.trainer import rng_state, set_rng_state

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    torch_save_atomic(tmp_path / "c.pt", {"model": {}, "rng": rng_state()})
    expected = (torch.rand(3).tolist(), np.random.normal(size=3).tolist(), random.random())
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    set_rng_state(ckpt.load_checkpoint(tmp_path / "c.pt")["rng"])  # weights_only load
    assert (torch.rand(3).tolist(), np.random.normal(size=3).tolist(), random.random()) == expected


def test_time_limit_ends_the_run_and_evaluations_are_logged_with_elapsed(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from maskrcnn.engine import trainer as trainer_module

    clock = iter(range(1000))  # every perf_counter call advances 1 s: each step takes 1 s
    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    model, trainer = _quadratic_trainer("solver.time_limit=0.045")  # 2.7 s
    log = TrainLog(tmp_path, start_iter=0, max_iter=10)
    trainer.hooks = [LogHook(log, period=100),
                     EvalHook(lambda m: {"bbox/AP": 0.5}, period=2, out_dir=tmp_path, log=log)]
    trainer.train(0, 10)
    log.close()
    assert (trainer.iter, trainer.max_iter, trainer.elapsed) == (3, 3, 3.0)  # stopped at the budget
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # evaluation after step 2 (period) and step 3 (the last, as the budget made it), with the
    # training seconds spent so far; the last step is also logged
    assert [r for r in records if "val/bbox/AP" in r] == [
        {"iter": 2, "elapsed": 2.0, "val/bbox/AP": 0.5}, {"iter": 3, "elapsed": 3.0, "val/bbox/AP": 0.5}]
    assert [r["iter"] for r in records if "loss" in r] == [3]
    assert trainer.state_dict()["elapsed"] == 3.0  # a resumed run continues the count
