"""What a training run reports: a tqdm bar, `metrics.jsonl` and TensorBoard event files.

Only the main process logs; the others get a logger with `enabled=False` that does nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from ..fileio import write_text_atomic

METRICS = "metrics.jsonl"


class TrainLog:
    """The main process's training report in `out_dir`: a progress bar from `start_iter` to
    `max_iter`, metrics.jsonl (entries after `start_iter` dropped on resume) and TensorBoard files
    in tb/. `enabled=False` (other processes): every method does nothing."""

    def __init__(self, out_dir: str | Path, start_iter: int, max_iter: int, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter  # slow import: main process only

        self.out_dir = Path(out_dir)
        self.metrics_path = self.out_dir / METRICS
        _drop_entries_after(self.metrics_path, start_iter)
        self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=start_iter + 1)
        self.bar = tqdm(total=max_iter, initial=start_iter, desc="train", dynamic_ncols=True)

    def step(self, iteration: int, lr: float, losses: dict[str, float], seconds: float,
             write: bool) -> None:  # fmt: skip
        """Advance the bar; when `write`, also append to metrics.jsonl and TensorBoard.

        `iteration` counts completed iterations (1 after the first step).
        """
        if not self.enabled:
            return
        total = sum(losses.values())
        self.bar.update(1)
        parts = " ".join(f"{name.removeprefix('loss_')} {v:.3f}" for name, v in losses.items())
        self.bar.set_postfix_str(f"loss {total:.3f} ({parts}) lr {lr:.2e}", refresh=False)
        if not write:
            return
        record = {"iter": iteration, "lr": lr, **losses, "loss": total, "time": seconds}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if name != "iter":
                self.writer.add_scalar(f"train/{name}", value, iteration)

    def set_total(self, max_iter: int) -> None:
        """The bar's total, for runs that re-plan it (time budget, early stop)."""
        if self.enabled and self.bar.total != max_iter:
            self.bar.total = max_iter

    def note(self, text: str) -> None:
        """One line on the console, above the bar."""
        if self.enabled:
            self.bar.write(text)

    def scalars(self, iteration: int, values: dict[str, float], prefix: str, elapsed: float) -> None:
        """Evaluation results to TensorBoard and as one metrics.jsonl line (`iter`, `elapsed`
        training seconds, `val/segm/AP`, ...); the headline APs (`*/AP`) also to the console."""
        if not self.enabled:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, iteration)
        record = {"iter": iteration, "elapsed": elapsed, **{f"{prefix}/{k}": v for k, v in values.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k.endswith("/AP"))
        self.bar.write(f"iter {iteration} {prefix}: {shown}")

    def close(self) -> None:
        """Close the bar and flush and close the TensorBoard writer."""
        if self.enabled:
            self.bar.close()
            self.writer.close()


def _drop_entries_after(path: Path, iteration: int) -> None:
    """On resume, forget what was logged after the checkpoint, since those iterations rerun."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _iteration_of(line) <= iteration]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))


def _iteration_of(line: str) -> float:
    """The line's `iter`; a line cut short by a killed process counts as infinitely late."""
    try:
        return json.loads(line)["iter"]
    except (ValueError, KeyError, TypeError):
        return float("inf")
