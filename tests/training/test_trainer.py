"""The training loop: non-finite loss safety, gradient clipping, AMP, metrics.jsonl, best model."""

import json
import math

import pytest
import torch
from torch import nn

from maskrcnn.config import Config, apply_overrides
from maskrcnn.data.loader import build_train_loader
from maskrcnn.training import checkpoint as ckpt
from maskrcnn.training.solver import build_optimizer, build_scheduler, lr_factor
from maskrcnn.training.train_log import TrainLog
from maskrcnn.training.trainer import (CheckpointHook, EvalHook, LogHook, NonFiniteLossError,
                                     Trainer)  # fmt: skip
from maskrcnn.errors import CheckpointError
from maskrcnn.fileio import torch_save_atomic
from maskrcnn.presets import get_preset

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
    # one loader batch per optimiser step, as train() builds it
    loader = build_train_loader(samples, cfg.solver.ims_per_batch * cfg.solver.accumulate, cfg.solver.seed)
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
    assert "roi_heads.box_head.cls_score.weight: checkpoint (4, 64) vs model (3, 64)" in msg


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

    from maskrcnn.training.trainer import rng_state, set_rng_state

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    torch_save_atomic(tmp_path / "c.pt", {"model": {}, "rng": rng_state()})
    expected = (torch.rand(3).tolist(), np.random.normal(size=3).tolist(), random.random())
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    set_rng_state(ckpt.load_checkpoint(tmp_path / "c.pt")["rng"])  # weights_only load
    assert (torch.rand(3).tolist(), np.random.normal(size=3).tolist(), random.random()) == expected


def test_time_limit_ends_the_run_and_evaluations_are_logged_with_elapsed(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from maskrcnn.training import trainer as trainer_module

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


# ---------------------------------------------------------------------------------------------
# Gradient accumulation


def two_object_samples(n: int, size: int = 64) -> list:
    """n same-sized images with two rectangles each (labels 1..3), so every image has at least
    two positive RoIs (its ground-truth boxes join the proposals)."""
    gen = torch.Generator().manual_seed(1)
    samples = []
    for i in range(n):
        image = torch.rand(3, size, size, generator=gen) * 0.2
        boxes, masks = [], []
        for j, (x, y, w, h) in enumerate([(3 + i, 5, 24, 20), (34, 30 + i, 22, 26)]):
            mask = torch.zeros(size, size, dtype=torch.uint8)
            mask[y:y + h, x:x + w] = 1
            image[:, y:y + h, x:x + w] += 0.4 + 0.2 * j
            boxes.append([x, y, x + w, y + h])
            masks.append(mask)
        samples.append((image, {"boxes": torch.tensor(boxes, dtype=torch.float32),
                                "labels": torch.tensor([1 + i % 3, 1 + (i + 1) % 3]),
                                "masks": torch.stack(masks)}))  # fmt: skip
    return samples


class LossRecorder:
    def __init__(self):
        self.losses = []

    def after_step(self, trainer):
        self.losses.append(dict(trainer.losses))


def test_accumulating_two_batches_of_one_equals_one_batch_of_two():
    """Trainer.run_step's equality conditions hold here: 8 sampled RoIs with 2 positives and 64
    sampled anchors per image, same-sized images, FrozenBatchNorm. Then N=2 micro-batches of one
    image step like one batch of two: same logged losses, same weights after 3 steps."""
    from maskrcnn.model.detector import build_model

    common = ["model.box.batch_size_per_image=8", "solver.base_lr=0.02", "solver.warmup_iters=0"]
    samples = two_object_samples(6)
    trainers, counts = [], []
    for batch in (["solver.ims_per_batch=2"], ["solver.ims_per_batch=1", "solver.accumulate=2"]):
        cfg = tiny_maskrcnn_cfg(*common, *batch)
        torch.manual_seed(0)
        model = build_model(cfg)
        sample = model.roi_heads.sample

        def counting(proposals, targets, generators, sample=sample):
            out = sample(proposals, targets, generators)
            counts.extend((len(lab), int((lab > 0).sum())) for lab in out.labels)  # (sampled, positive)
            return out

        model.roi_heads.sample = counting
        trainers.append(make_trainer(model, cfg, samples, [LossRecorder()]))
    start = {k: v.clone() for k, v in trainers[0].model.state_dict().items()}
    for trainer in trainers:
        trainer.train(0, 3)
    big, small = (t.hooks[0].losses for t in trainers)
    assert len(big) == len(small) == 3
    # Same terms, grouped otherwise (per image, then averaged): a mean of n non-negative terms
    # summed in another order moves by <= n u of itself; the longest is the mask loss over
    # 2 images x 2 positives x 28 x 28 = 3136 terms. A missing 1/N would be off by 1/2.
    n, u = 2 * 2 * 28 * 28, torch.finfo(torch.float32).eps / 2
    for big_step, small_step in zip(big, small):
        assert small_step == pytest.approx(big_step, rel=n * u)
    assert len(counts) == 12 and set(counts) == {(8, 2)}  # the equality's condition, checked
    big, small = (dict(t.model.named_parameters()) for t in trainers)
    moved = max((big[k] - start[k]).abs().max().item() for k in big)
    assert moved > 1e-3  # a step of the wrong size (no 1/N scaling) would be off by ~moved / 2
    # each step's update is the same reduction in another order: n u of the distance moved
    for name, value in big.items():
        torch.testing.assert_close(small[name], value, rtol=0, atol=n * u * moved, msg=name)


class Interrupted(Exception):
    """Stands for a run killed part-way (power cut, pre-emption)."""


def _run(cfg, out, ann, *, resume=False, stop_at_call=None):
    """train() on the synthetic set with a fresh tiny model; it raises Interrupted at the
    `stop_at_call`-th forward (counting micro-batches)."""
    from maskrcnn.training.trainer import train
    from maskrcnn.model.detector import build_model

    torch.manual_seed(0)
    model = build_model(cfg)
    plain, calls = model.forward, []

    def forward(images, targets):
        calls.append(1)
        if len(calls) == stop_at_call:
            raise Interrupted
        return plain(images, targets)

    model.forward = forward  # an instance attribute: the state dict is the model's own
    train(cfg, out, resume=resume, device="cpu", model=model)


def _synth_cfg(ann, *overrides):
    data = [f"data.train_ann={ann}", f"data.train_images={ann.parent / 'images'}", "data.num_workers=0",
            "input.min_size=[96]", "input.max_size=96", "solver.base_lr=0.01", "solver.warmup_iters=0"]
    return tiny_maskrcnn_cfg(*data, *overrides)


def _losses_by_iter(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["iter"]: {k: v for k, v in r.items() if k.startswith("loss")} for r in rows}


def test_resume_inside_an_accumulation_cycle_continues_exactly(tmp_path, synth_ann):
    cfg = _synth_cfg(synth_ann, "solver.ims_per_batch=1", "solver.accumulate=2", "solver.max_iter=4",
                     "solver.checkpoint_period=1", "solver.log_period=1")  # fmt: skip
    _run(cfg, tmp_path / "whole", synth_ann)
    with pytest.raises(Interrupted):  # the 2nd micro-batch of step 3: half a cycle done
        _run(cfg, tmp_path / "cut", synth_ann, stop_at_call=6)
    assert ckpt.Checkpointer(tmp_path / "cut", 3).last().name == "model_0000002.pt"
    _run(cfg, tmp_path / "cut", synth_ann, resume=True)
    whole, cut = (ckpt.load_checkpoint(tmp_path / d / "model_final.pt")["model"] for d in ("whole", "cut"))
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)  # bit for bit
    assert _losses_by_iter(tmp_path / "cut") == _losses_by_iter(tmp_path / "whole")
    assert sorted(_losses_by_iter(tmp_path / "cut")) == [1, 2, 3, 4]  # counted in optimiser steps


def test_training_with_the_federated_loss_weights_negatives_by_frequency(tmp_path, synth_ann):
    """Two steps of a tiny model: the box head's sampling weights are sqrt(images per class)
    of the training set, and the losses are finite."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.repeat_factors import class_image_counts
    from maskrcnn.training import trainer as training

    cfg = _synth_cfg(synth_ann, "model.box.classifier=sigmoid", "model.box.federated_classes=2",
                     "solver.max_iter=2", "solver.ims_per_batch=2")
    seen = {}
    original = training.Trainer.train

    def spy(self, start, stop):
        seen["weights"] = training.distributed.unwrap(self.model).roi_heads.box_head.class_weights.clone()
        return original(self, start, stop)

    training.Trainer.train = spy
    try:
        training.train(cfg, tmp_path / "run")
    finally:
        training.Trainer.train = original
    counts = class_image_counts(CocoDataset(synth_ann).image_labels(), cfg.model.num_classes)
    torch.testing.assert_close(seen["weights"], counts.clamp(min=1).sqrt())
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss_classifier"]) for r in rows if "loss_classifier" in r)
