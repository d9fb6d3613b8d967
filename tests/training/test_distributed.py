"""DDP: `torchrun --nproc_per_node 2` with batch 1 per process equals one process with batch 2."""

import json
import subprocess
import sys

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.data.synthetic import write_synthetic_dataset
from maskrcnn.training import distributed
from maskrcnn.training.checkpoint import load_checkpoint
from maskrcnn.errors import UserError

TINY = [
    "input.min_size=[64]", "input.max_size=64", "model.backbone.fpn_channels=32",
    "model.rpn.pre_nms_topk_train=100", "model.rpn.post_nms_topk_train=50",
    "model.rpn.batch_size_per_image=64",
    "model.box.fc_dim=64", "model.mask.conv_dims=[16]", "data.num_workers=0",
    # The mask loss is a mean over the positive RoIs of the whole batch (as in torchvision), so
    # two batches of 1 average like one batch of 2 only if every image has as many positives:
    # 4 RoIs at 25% positive is exactly 1 per image, since every image has a ground-truth box.
    "model.box.batch_size_per_image=4",
    "solver.base_lr=0.01", "solver.warmup_iters=1", "solver.log_period=1",
    "solver.ims_per_batch=2", "solver.max_iter=3", "solver.checkpoint_period=10",
]  # fmt: skip


def test_two_processes_equal_one(tmp_path):
    # synthetic images all have the same size, so both layouts pad identically
    ann = write_synthetic_dataset(tmp_path / "data", num_images=4, seed=0, size=64)
    args = ["train", "--model", "maskrcnn_r18_fpn", "--data", str(ann),
            "--images", str(tmp_path / "data" / "images"), "--device", "cpu"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "one"), "--set", *TINY]) == 0
    # The 2-process run also evaluates (on rank 0, while rank 1 waits) after iteration 2 and 3;
    # evaluation must not disturb training.
    val = ["--val-data", str(ann), "--val-images", str(tmp_path / "data" / "images")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "maskrcnn", *args, *val, "--out", str(tmp_path / "two"),
           "--set", *TINY, "solver.eval_period=2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    one = load_checkpoint(tmp_path / "one" / "model_0000003.pt")
    two = load_checkpoint(tmp_path / "two" / "model_0000003.pt")
    worst = max((one["model"][k].float() - v.float()).abs().max().item()
                for k, v in two["model"].items())  # fmt: skip
    # Two processes sum the same loss terms grouped per image: a mean of n non-negative terms in
    # another order moves by <= n u of itself, the longest being the mask loss (2 images x 1
    # positive x 28 x 28); each of the 3 updates (lr 0.01, smaller than the weights) differs by
    # <= n u of itself, so the weights by <= n u max |w|. A missing average over the processes
    # would double a step.
    n, u = 2 * 1 * 28 * 28, torch.finfo(torch.float32).eps / 2
    assert worst <= n * u * max(v.float().abs().max().item() for v in one["model"].values())
    best = load_checkpoint(tmp_path / "two" / "model_best.pt")
    assert best["metric"] == "segm/AP" and best["iter"] in (2, 3)
    assert "segm/AP" in json.loads((tmp_path / "two" / "eval" / "metrics.json").read_text())
    # rank 0 alone logs: one line per iteration, with the losses averaged over both processes
    lines = [x for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    ref = (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iter"] for x in lines] == [1, 2, 3]
    for a, b in zip(lines, ref):
        assert json.loads(a)["loss"] == pytest.approx(json.loads(b)["loss"], rel=n * u)


def test_single_process_needs_no_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info, device = distributed.init("cpu")
    assert (info.rank, info.world_size, info.is_main, device.type) == (0, 1, True, "cpu")
    assert not torch.distributed.is_initialized()
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, device) is model
    values = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.mean_across(values), values)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_a_user_error():
    with pytest.raises(UserError, match="no CUDA device"):
        distributed.pick_device("cuda")
