"""An exponential moving average (EMA) of the model's weights, for evaluation and the saved model.

After each optimiser step every floating-point parameter and buffer w of the model moves its
average a towards it: a <- d a + (1 - d) w, with d = min(solver.ema_decay, n / (10 + n)) when n
updates came before. The first update copies the weights (d = 0: the weights it was built from,
before any pretrained ones were loaded, never count); the ramp then keeps the average's window
at about a tenth of the steps so far until 1 / (1 - ema_decay) steps, so one setting suits a run
of 500 steps and one of 50 000.

Training always steps the model's own weights; the average is what the evaluations score and
what model_best.pt / model_final.pt hold. Integer buffers (counters) are taken as they are.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

RAMP = 10  # d = n / (RAMP + n) until that reaches the decay


class WeightAverage:
    """The average of `model`'s floating-point state (parameters and buffers, by state-dict key)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items()
                        if v.dtype.is_floating_point}  # fmt: skip

    def next_decay(self) -> float:
        """d of the next update."""
        return min(self.decay, self.updates / (RAMP + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights (after an optimiser step)."""
        state = model.state_dict()
        keys = list(self.average)
        torch._foreach_lerp_([self.average[k] for k in keys], [state[k].detach() for k in keys],
                             1.0 - self.next_decay())
        self.updates += 1

    def model_state(self, model: nn.Module) -> dict:
        """`model`'s state dict with the averaged weights (what inference loads)."""
        return {k: self.average.get(k, v) for k, v in model.state_dict().items()}

    @contextmanager
    def applied(self, model: nn.Module):
        """The averaged weights in `model` for the duration of the block, then its own again."""
        state = model.state_dict()
        own = {k: state[k].detach().clone() for k in self.average}
        with torch.no_grad():
            for k, v in self.average.items():
                state[k].copy_(v)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in own.items():
                    state[k].copy_(v)

    def state_dict(self) -> dict:
        """The average and its update count, as a checkpoint holds them to resume exactly."""
        return {"average": self.average, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
        self.updates = int(state["updates"])
        for k, v in state["average"].items():
            self.average[k].copy_(v)
