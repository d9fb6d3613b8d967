"""LR schedules against hand-computed values; weight-decay parameter groups."""

import copy
import math

import pytest
import torch
from torch import nn

from maskrcnn.config import SolverConfig
from maskrcnn.training.solver import build_optimizer, build_scheduler, lr_factor, param_groups


def _solver(**kw) -> SolverConfig:
    base = dict(base_lr=0.02, max_iter=100, warmup_iters=10, warmup_factor=0.001, steps=(60, 80),
                gamma=0.1)  # fmt: skip
    return SolverConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "it, expected",
    [
        (0, 0.001),  # warm-up starts at warmup_factor
        (5, 0.001 * 0.5 + 0.5),  # halfway: alpha = 0.5
        (10, 1.0),  # warm-up over
        (59, 1.0),
        (60, 0.1),  # first step
        (79, 0.1),
        (80, 0.01),  # second step
        (99, 0.01),
    ],
)
def test_multistep_with_warmup(it, expected):
    assert lr_factor(it, _solver(schedule="multistep")) == pytest.approx(expected)


@pytest.mark.parametrize(
    "it, expected",
    [
        (0, 0.001),  # cos(0) = 1, times warm-up start
        (10, 0.5 * (1 + math.cos(math.pi * 0.1))),  # 0.975528...
        (50, 0.5),  # half-way down the cosine
        (75, 0.5 * (1 - math.sqrt(0.5))),  # cos(3pi/4) = -sqrt(2)/2
        (100, 0.0),
    ],
)
def test_cosine_with_warmup(it, expected):
    assert lr_factor(it, _solver(schedule="cosine")) == pytest.approx(expected)


def test_scheduler_drives_optimizer_lr():
    """The optimizer's lr at step k is base_lr * lr_factor(k), as SGD will use it."""
    model = nn.Linear(2, 2)
    cfg = _solver(warmup_iters=4, steps=(6,))
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # warm-up 0.001 -> 1 over 4 iterations: factor = 0.001 + 0.999 * k / 4
    expected = [0.02 * (0.001 + 0.999 * k / 4) for k in range(4)] + [0.02, 0.02, 0.002, 0.002]
    assert seen == pytest.approx(expected)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)  # weight + bias
        self.bn = nn.BatchNorm2d(4)  # weight + bias, both norm
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 2, bias=False)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_no_weight_decay_on_norm_and_bias():
    net = _Net()
    groups = param_groups(net, weight_decay=1e-4, decay_norm_bias=False)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert decay == {id(net.conv.weight), id(net.fc.weight)}
    assert no_decay == {id(p) for p in (net.conv.bias, net.bn.weight, net.bn.bias,
                                        net.gn.weight, net.gn.bias)}  # fmt: skip


def test_weight_decay_everywhere_by_default_and_frozen_left_out():
    net = _Net()
    groups = param_groups(net, weight_decay=1e-4, decay_norm_bias=True)
    assert len(groups) == 1
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for p in groups[0]["params"]} == trainable
    assert id(net.frozen.weight) not in trainable


def test_sgd_step_matches_hand_computation():
    """One SGD step with momentum and decoupled groups: w' = w - lr * (g + wd * w)."""
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(2.0)
        lin.bias.fill_(1.0)
    cfg = _solver(base_lr=0.1, weight_decay=0.5, weight_decay_norm_bias=False, warmup_iters=0)
    opt = build_optimizer(lin, cfg)
    lin(torch.ones(1, 1)).sum().backward()  # both gradients are 1
    opt.step()
    assert lin.weight.item() == pytest.approx(2.0 - 0.1 * (1.0 + 0.5 * 2.0))
    assert lin.bias.item() == pytest.approx(1.0 - 0.1 * 1.0)  # no decay on the bias


def test_adamw_option_builds_adamw_with_the_same_groups():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    opt = build_optimizer(model, SolverConfig(optimizer="adamw", base_lr=1e-3, weight_decay_norm_bias=False))
    assert isinstance(opt, torch.optim.AdamW)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 1e-4]  # conv weight decays; GN affine and biases do not


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fast_mode_fuses_the_update_without_changing_it(optimizer):
    torch.manual_seed(0)
    plain_model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.LayerNorm(5))  # a norm group too
    fast_model, true_model = copy.deepcopy(plain_model), copy.deepcopy(plain_model).double()
    plain = build_optimizer(plain_model, _solver(optimizer=optimizer))
    fast = build_optimizer(fast_model, _solver(optimizer=optimizer, fast=True))
    truth = build_optimizer(true_model, _solver(optimizer=optimizer))  # the referee: float64
    assert fast.param_groups[0]["fused"] and not plain.param_groups[0]["fused"]
    start = copy.deepcopy(plain_model[0].weight)
    starts = [t.detach().clone() for t in true_model.parameters()]
    x, target = torch.randn(8, 6), torch.randn(8, 5)
    for _ in range(4):
        for model, opt in ((plain_model, plain), (fast_model, fast), (true_model, truth)):
            opt.zero_grad()
            (model(x.to(model[0].weight.dtype)) - target.to(model[0].weight.dtype)).square().sum().backward()
            opt.step()
    # The fused step does the unfused one's arithmetic in one kernel: no further from float64 than
    # twice the unfused fp32 error, or within the rounding of 4 steps: a step rounds the parameter
    # and its update a few times (8 u of |p| + the distance moved, the update's size).
    u = torch.finfo(torch.float32).eps / 2
    for p, q, t, t0 in zip(plain_model.parameters(), fast_model.parameters(), true_model.parameters(), starts):
        err, plain_err = (q.double() - t).abs().max().item(), (p.double() - t).abs().max().item()
        floor = 4 * 8 * u * (t.abs().max().item() + (t - t0).abs().max().item())
        assert err <= max(2 * plain_err, floor), (err, plain_err, floor)
    assert (plain_model[0].weight - start).abs().max() > 1e-4  # it did move
