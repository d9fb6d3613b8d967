"""benchmarks/roi_align_variants.py --smoke: every RoIAlign variant agrees with torchvision's
roi_align per level (forward and, in training, the maps' gradient) before it is timed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import roi_align_variants  # noqa: E402


def test_smoke_checks_and_times_every_variant(tmp_path):
    out = tmp_path / "roi"
    assert roi_align_variants.main(["--smoke", "--out", str(out)]) == 0
    times = json.loads(Path(f"{out}.json").read_text())["median_ms"]
    assert set(times["inference fp32"]) == {"torchvision, 1 thread", "torchvision, threaded", "gather"}
    assert set(times["training fp32 forward + backward"]) == {"torchvision, 1 thread", "threaded (built)", "sparse"}
    assert all(ms > 0 for case in times.values() for ms in case.values())
