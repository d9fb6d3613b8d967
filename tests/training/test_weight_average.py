"""solver.ema_decay: the average of the weights that evaluations score and runs save, checked
against the recurrence computed by hand in float64; resume stays exact with it."""

import pytest
import torch
from test_trainer import Interrupted, _quadratic_trainer, _run, _synth_cfg

from maskrcnn.config import ConfigError
from maskrcnn.training import checkpoint as ckpt
from maskrcnn.training.train_log import TrainLog
from maskrcnn.training.trainer import CheckpointHook, EvalHook
from maskrcnn.training.weight_average import RAMP


def _by_hand(weights: list[list[float]], cap: float) -> list[float]:
    """a <- d a + (1 - d) w with d = min(cap, n / (RAMP + n)), n = updates before (float64)."""
    average = None
    for n, w in enumerate(weights):
        d = min(cap, n / (RAMP + n))
        average = list(w) if average is None else [d * a + (1 - d) * x for a, x in zip(average, w)]
    return average


@pytest.mark.parametrize("cap", [0.9, 0.5])  # 0.9: the ramp decides every step; 0.5: the cap does
def test_evaluations_and_the_final_model_hold_the_average(tmp_path, cap):
    # lr 1, gradient (3, 4): the weights after step t are -t * (3, 4)
    model, trainer = _quadratic_trainer(f"solver.ema_decay={cap}")
    seen = []
    log = TrainLog(tmp_path, start_iter=0, max_iter=6)
    trainer.hooks = [EvalHook(lambda m: seen.append(m.w.tolist()) or {"bbox/AP": 0.5}, period=3,
                              out_dir=tmp_path, log=log),
                     CheckpointHook(ckpt.Checkpointer(tmp_path, 2), period=100)]  # fmt: skip
    trainer.train(0, 6)
    steps = [[-3.0 * t, -4.0 * t] for t in range(1, 7)]
    assert seen[0] == pytest.approx(_by_hand(steps[:3], cap), rel=1e-6)
    assert seen[1] == pytest.approx(_by_hand(steps, cap), rel=1e-6)
    assert seen[1] != pytest.approx(steps[-1])  # not the weights themselves
    assert model.w.tolist() == pytest.approx(steps[-1])  # training steps its own weights
    final = ckpt.load_checkpoint(tmp_path / "model_final.pt")["model"]
    assert final["w"].tolist() == pytest.approx(seen[1])
    assert final["coef"].tolist() == [3.0, 4.0]  # a constant buffer averages to itself


def test_resuming_without_the_average_is_refused():
    _, plain = _quadratic_trainer()
    plain.train(0, 2)
    _, averaged = _quadratic_trainer("solver.ema_decay=0.9")
    with pytest.raises(ConfigError, match="without solver.ema_decay"):
        averaged.load_state_dict(plain.state_dict(), "model_0000002.pt")


def test_ema_decay_of_one_is_refused():
    with pytest.raises(ConfigError, match="ema_decay"):
        _quadratic_trainer("solver.ema_decay=1.5")


def test_resume_with_the_average_continues_exactly(tmp_path, synth_ann):
    cfg = _synth_cfg(synth_ann, "solver.ims_per_batch=1", "solver.max_iter=4", "solver.ema_decay=0.9",
                     "solver.checkpoint_period=1")  # fmt: skip
    _run(cfg, tmp_path / "whole", synth_ann)
    with pytest.raises(Interrupted):
        _run(cfg, tmp_path / "cut", synth_ann, stop_at_call=3)
    _run(cfg, tmp_path / "cut", synth_ann, resume=True)
    whole, cut = (ckpt.load_checkpoint(tmp_path / d / "model_final.pt")["model"] for d in ("whole", "cut"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)  # bit for bit
    last = ckpt.load_checkpoint(tmp_path / "whole" / "model_0000004.pt")
    own = last["model"]
    assert last["weight_average"]["updates"] == 4
    assert any(not torch.equal(own[k], whole[k]) for k in own if own[k].is_floating_point())
