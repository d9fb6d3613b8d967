"""Time-budgeted runs: the duration parser, the schedule over the budget, a run that ends at its
budget with its learning rate at the schedule's end, early stopping and the best checkpoint."""

import json
import math
import time

import pytest
import torch
import yaml

from maskrcnn.config import SolverConfig
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.training import checkpoint as ckpt
from maskrcnn.training.budget import BudgetPlan, parse_duration
from maskrcnn.training.solver import budget_lr_factor
from maskrcnn.training.trainer import summary_line, train
from maskrcnn.errors import UserError

from test_trainer import tiny_maskrcnn_cfg


@pytest.mark.parametrize("text, minutes", [("90s", 1.5), ("30m", 30.0), ("1h", 60.0), ("1.5h", 90.0),
                                           ("45", 45.0), ("2 min", 2.0)])  # fmt: skip
def test_parse_duration(text, minutes):
    assert parse_duration(text) == pytest.approx(minutes)


@pytest.mark.parametrize("text", ["", "0m", "-5m", "ten minutes", "5d"])
def test_parse_duration_rejects(text):
    with pytest.raises(UserError, match="--budget"):
        parse_duration(text)


def test_budget_schedule_values():
    cfg = SolverConfig(schedule="cosine", warmup_iters=10, warmup_factor=0.1)
    assert budget_lr_factor(0.0, 0, cfg) == pytest.approx(0.1)  # warm-up start
    assert budget_lr_factor(0.02, 5, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.02)) * 0.55)
    # warm-up ends by a tenth of the budget even when its iterations are not done
    assert budget_lr_factor(0.1, 3, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))
    assert budget_lr_factor(0.5, 100, cfg) == pytest.approx(0.5)
    assert budget_lr_factor(1.0, 100, cfg) == 0.0
    steps = SolverConfig(schedule="multistep", max_iter=100, steps=(60, 90), warmup_iters=0)
    assert [budget_lr_factor(p, 50, steps) for p in (0.59, 0.6, 0.95)] == pytest.approx([1, 0.1, 0.01])


def test_plan_stops_within_half_a_step():
    plan = BudgetPlan(minutes=1 / 6)  # 10 s
    for _ in range(18):
        plan.add(0.5, 0.5)
    assert not plan.should_stop() and plan.planned_iters(18) == 20
    plan.add(0.5, 0.5)
    assert not plan.should_stop()  # 9.5 s: one more step ends exactly on the budget
    plan.add(0.5, 0.5)
    assert plan.should_stop() and plan.progress == 1.0
    plan = BudgetPlan(minutes=1 / 6)
    for _ in range(16):
        plan.add(0.6, 0.6)
    assert not plan.should_stop()  # 9.6 s: 0.4 s short now, 0.2 s over after one more step
    plan.add(0.6, 0.6)
    assert plan.should_stop()


class Timed(torch.utils.data.Dataset):
    """A dataset that records when the loop first asked for a sample (the start of training)."""

    def __init__(self, dataset):
        self.dataset, self.first = dataset, None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.first = self.first or time.perf_counter()
        return self.dataset[index]

    def __getattr__(self, name):  # the records auto sizes and aspect-ratio grouping read
        return getattr(self.__dict__["dataset"], name)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """8 synthetic 64-px images (3 classes) -> (annotation file, image folder)."""
    ann = write_synthetic_dataset(tmp_path_factory.mktemp("shapes"), num_images=8, seed=0, size=64)
    return ann, ann.parent / "images"


def shapes_cfg(shapes, *overrides):
    ann, images = shapes
    return tiny_maskrcnn_cfg(f"data.train_ann={ann}", f"data.train_images={images}", "data.num_workers=0",
                             "solver.base_lr=0.01", *overrides)  # fmt: skip


def test_budget_run_ends_at_its_budget_with_the_final_lr(tmp_path, shapes):
    budget = 6.0  # seconds; the same logic as a 2-minute budget (measured in docs/training.md)
    data = Timed(CocoDataset(*shapes))
    ends = []

    def evaluate(model):  # called once, right after the last step (no periodic evaluations)
        ends.append(time.perf_counter())
        return {"segm/AP": 0.5}

    cfg = shapes_cfg(shapes, f"solver.time_budget={budget / 60}", "solver.schedule=cosine", "solver.warmup_iters=2",
                     "solver.budget_evals=0", "solver.log_period=1", "input.min_size=auto",
                     "model.anchors.sizes=auto")  # fmt: skip
    train(cfg, tmp_path, device="cpu", train_set=data, evaluate=evaluate)
    took = ends[0] - data.first
    assert abs(took - budget) <= 0.1 * budget, took
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "lr" in r]
    assert len(steps) >= 2
    last = ckpt.load_checkpoint(ckpt.Checkpointer(tmp_path, 1).last())
    assert last["iter"] == steps[-1]["iter"]
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == [0.0] * len(last["optimizer"]["param_groups"])
    # the last step ran at the very end of the cosine: within four average loop turns of the end
    # (a turn's time varies with the machine's load: the run re-plans, so it cannot be exact)
    share = 4 * took / len(steps) / budget
    assert steps[-1]["lr"] <= 0.01 * 0.5 * (1 - math.cos(math.pi * min(1.0, share))) + 1e-12
    recorded = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert isinstance(recorded["input"]["min_size"], list) and len(recorded["model"]["anchors"]["sizes"]) == 5


def test_early_stop_keeps_the_best_checkpoint(tmp_path, shapes):
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])  # best at iteration 2, then 2 worse: stop at 4
    cfg = shapes_cfg(shapes, "solver.max_iter=10", "solver.eval_period=1", "solver.early_stop_patience=2",
                     "solver.checkpoint_period=1", "solver.keep_checkpoints=10")  # fmt: skip
    last = train(cfg, tmp_path, device="cpu", train_set=CocoDataset(*shapes),
                 evaluate=lambda model: {"segm/AP": next(scores)})  # fmt: skip
    assert last.name == "model_0000004.pt"
    best = ckpt.load_checkpoint(tmp_path / "model_best.pt")
    assert (best["iter"], best["value"]) == (2, 0.3)
    at_two = ckpt.load_checkpoint(tmp_path / "model_0000002.pt")["model"]
    assert all(torch.equal(best["model"][k], v) for k, v in at_two.items())
    assert torch.load(tmp_path / "model_final.pt", weights_only=True)["iter"] == 4
    line = summary_line(tmp_path, last)
    assert str(tmp_path / "model_best.pt") in line and "30.0 at iteration 2" in line
