"""benchmarks/tta_accuracy.py --smoke: both runners scored as pycocotools scores their results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import tta_accuracy  # noqa: E402


def test_smoke_reports_both_runners_and_the_cost(tmp_path):
    out = tmp_path / "tta"
    assert tta_accuracy.main(["--smoke", "--out", str(out)]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert set(report["metrics"]) == {"plain", "tta"} and report["images"] == 2
    assert report["cost"] == report["seconds"]["tta"] / report["seconds"]["plain"] > 1  # 4 views cost more than 1
    table = Path(f"{out}.md").read_text()
    assert "| plain |" in table and "| tta |" in table and "4 views" in table
