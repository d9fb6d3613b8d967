"""A run that fits a time budget (`solver.time_budget`, `maskrcnn train --budget 30m`).

The learning-rate schedule of a budgeted run is a function of its progress, the fraction of the
budget used (wall time of training steps, periodic evaluations and checkpoints), not of a fixed
iteration count: warm-up, cosine (or multistep) decay and the end of the run all happen on the
same clock, so the run ends at its budget with its schedule complete, however fast the machine
turns out to be. The plan is redone after every step from the measured step times:
- the run stops after the step at which one more step would end further past the budget than
  stopping now ends before it (so it ends within half a step of it);
- the final evaluation is part of the budget: once an evaluation has been timed, its duration is
  kept in reserve at the end;
- `planned_iters` (what the log shows as the total) is the iterations done plus the time left
  over the median of the last steps' durations.
A resumed run continues the clock from the seconds its checkpoint recorded.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import deque

from ..errors import UserError

RECENT_STEPS = 20  # steps whose median duration predicts the next ones
ADJUST_AFTER = 3  # timed steps (after the run's first) before `adjust` is asked
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*$")
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, None: 60}


def parse_duration(text: str) -> float:
    """'30m', '90s', '1h', '1.5h' or a bare number of minutes -> minutes."""
    match = _DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--budget {text!r}: expected a positive duration such as 90s, 30m or 1h")
    return float(match.group(1)) * _SECONDS[match.group(2)] / 60


class BudgetPlan:
    """Progress of a run against its budget of `minutes`; `used` seconds already spent (resume)."""

    def __init__(self, minutes: float, used: float = 0.0):
        self.seconds = minutes * 60
        self.used = used
        self.reserve = 0.0  # seconds kept for the final evaluation
        self.done = False
        self.recent: deque[float] = deque(maxlen=RECENT_STEPS)
        self.skip_next = True  # the run's first step (warm-up of caches and allocators) is not timed
        # adjust(step_seconds, seconds_left) -> True if it made steps cheaper (auto_size.BudgetSizer)
        self.adjust = None

    @property
    def available(self) -> float:
        """Seconds of the budget for training steps and evaluations: the budget less the reserve kept for
        the final evaluation (at least 1e-9, so progress never divides by zero)."""
        return max(self.seconds - self.reserve, 1e-9)

    @property
    def progress(self) -> float:
        """Fraction of the budget used, in [0, 1]; 1 once the run has decided to stop."""
        return 1.0 if self.done else min(1.0, self.used / self.available)

    def add(self, wall_seconds: float, step_seconds: float) -> None:
        """Account one loop turn: its wall time (step + the previous turn's hooks) and the step."""
        self.used += wall_seconds
        if self.skip_next:
            self.skip_next = False
            return
        self.recent.append(step_seconds)

    def step_estimate(self) -> float:
        """The median duration (seconds) of the last `RECENT_STEPS` timed steps; 0 before any is timed."""
        return statistics.median(self.recent) if self.recent else 0.0

    def maybe_adjust(self, step_seconds: float) -> None:
        """Ask `adjust` once ADJUST_AFTER steps are timed; a change restarts the timing.
        `step_seconds`: the median step time, agreed between processes."""
        if self.adjust is None or len(self.recent) != ADJUST_AFTER:
            return
        if self.adjust(step_seconds, self.available - self.used):
            self.recent.clear()
            self.skip_next = True  # the first step at the new size pays its own warm-up

    def should_stop(self) -> bool:
        """One more step would end further past the budget than stopping now ends before it."""
        return self.used + 0.5 * self.step_estimate() >= self.available

    def planned_iters(self, done_iters: int) -> int:
        """Iterations the run is expected to reach at the current pace (> done_iters)."""
        step = self.step_estimate()
        left = max(self.available - self.used, 0.0)
        return done_iters + max(1, math.floor(left / step + 0.5) if step > 0 else 1)

    def keep_for_final_eval(self, eval_seconds: float) -> None:
        """Keep `eval_seconds` (the last evaluation's duration) at the end of the budget for the final
        evaluation; at most half the budget."""
        self.reserve = min(eval_seconds, 0.5 * self.seconds)
