"""Issue 18's hostile-but-ordinary inputs against the `maskrcnn` command line, each in its own
process (4 GB memory cap, 3-minute timeout): exit status, lines on stderr, the last of them, and
what is left in --out. Run it on any checkout to compare before / after:

    PYTHONPATH=/path/to/checkout python benchmarks/hostile_inputs.py [--json out.json]

The tests in tests/reliability/ assert the fixed behaviour; this script shows both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

PROGRESS = re.compile(r"^\s*(train|eval|predict): +\d+%\|")
SMALL = ["--set", "min_size=64", "--set", "max_size=96"]
TINY_TRAIN = ["--set", "input.min_size=[64]", "input.max_size=64", "model.backbone.fpn_channels=32",
              "model.rpn.batch_size_per_image=64", "model.box.batch_size_per_image=32", "model.box.fc_dim=64",
              "model.mask.conv_dims=[16]", "data.num_workers=0", "solver.ims_per_batch=1", "solver.max_iter=2"]
FULL_DISK = """
import errno, os, sys, torch
from maskrcnn.cli import main
save = torch.save
def full(obj, f, *a, **k):
    if ".model_0000002.pt." in str(getattr(f, "name", "")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save(obj, f, *a, **k)
torch.save = full
sys.exit(main(sys.argv[1:]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        data = _setup(root)
        rows = []
        for name, argv, out, runner in _cases(root, data):
            if args.only and name not in args.only:
                continue
            rows.append({"case": name, **_run(argv, out, runner)})
            row = rows[-1]
            print(f"{name:<28} exit {row['exit']!s:>4}  stderr lines {row['stderr_lines']:>3}  "
                  f"{row['last_line'][:150]}  | out: {row['out']}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _setup(root: Path) -> dict:
    import warnings

    import maskrcnn
    from maskrcnn.data.synthetic import write_synthetic_dataset

    ann = write_synthetic_dataset(root / "shapes", 3, seed=0, size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = maskrcnn.load_model("maskrcnn_r18_fpn", precision=None, num_classes=3)
    maskrcnn.save_weights(model, root / "r18.safetensors")
    images = root / "imgs"
    images.mkdir()
    for i in range(2):
        _png(images / f"{i}.png", 40, 50, seed=i)
    (root / "notes.txt").write_text("a regular file\n")
    return {"ann": ann, "images": ann.parent / "images", "weights": root / "r18.safetensors", "imgs": images}


def _cases(root: Path, d: dict):
    """(name, argv, --out folder name or None when argv has its own --out, python code to run
    instead of `python -m maskrcnn` or None)."""
    model = ["--model", "maskrcnn_r18_fpn", "--weights", str(d["weights"])]
    cli = [sys.executable, "-m", "maskrcnn"]
    coco = json.loads(d["ann"].read_text())

    def ann_with(name: str, **changes) -> Path:
        data = json.loads(json.dumps(coco))
        data["annotations"][0].update(changes)
        path = root / f"{name}.json"
        path.write_text(json.dumps(data))
        return path

    def folder(name: str, extra: dict) -> Path:
        path = root / name
        shutil.copytree(d["imgs"], path)
        for file, make in extra.items():
            make(path / file)
        return path

    def train(ann, images=None, *extra):
        return [*cli, "train", "--model", "maskrcnn_r18_fpn", "--data", str(ann), "--images",
                str(images or d["images"]), *TINY_TRAIN, *extra]

    def predict(inputs, *extra, weights=d["weights"], preset="maskrcnn_r18_fpn"):
        return [*cli, "predict", "--model", preset, "--weights", str(weights), *map(str, inputs),
                "--score-thresh", "0", *SMALL, *extra]

    def results(name, detections):
        path = root / f"{name}.json"
        path.write_text(json.dumps(detections))
        return [*cli, "eval", "--results", str(path), "--data", str(d["ann"])]

    def weights(name, make):
        path = root / name
        make(path)
        return predict([d["imgs"] / "0.png"], weights=path)

    good = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [2, 2, 20, 20]}
    empty_set = root / "empty.json"
    empty_set.write_text(json.dumps({**coco, "images": [], "annotations": []}))
    yield "1a nan polygon", train(ann_with("nanpoly", segmentation=[[2, 2, 20, float("nan"), 20, 20]])), "run1a", None
    yield "1b nan bbox", train(ann_with("nanbox", bbox=[2, float("nan"), 5, 5])), "run1b", None
    yield "2a bomb among images", predict([folder("bomb", {"b.png": lambda p: _bomb(p)})]), "out2a", None
    yield "3 thin image", predict([folder("thin", {"t.png": lambda p: _png(p, 1, 3000)})]), "out3", None
    yield "4 a.jpg and a.png", predict([folder("same", {"0.jpg": lambda p: _png(p, 30, 30)})]), "out4", None
    yield "5a eval nan score", results("nanscore", [good, dict(good, score=float("nan"))]), "out5a", None
    yield "5b eval empty results", results("none", []), "out5b", None
    yield "6a predict out under file", predict([d["imgs"]], "--out", str(root / "notes.txt" / "o")), None, None
    yield "6b train out under file", train(d["ann"], None, "--out", str(root / "notes.txt" / "o")), None, None
    yield "6c export out in /proc", [*cli, "export", *model, "--out", "/proc/m.onnx"], None, None
    yield "6d eval out under file", [*results("ok", [good]), "--out", str(root / "notes.txt" / "o")], None, None
    yield "7a weights: text", weights("w.pt", lambda p: p.write_text("see the shared drive\n")), "out7", None
    yield "7b weights: plain pickle", weights("w2.pt", lambda p: p.write_bytes(pickle.dumps({"w": [1.0]}))), "out7", None
    yield "7c weights: old format", weights("w3.pt", _old_format_model), "out7", None
    yield "7d weights: zero bytes", weights("w4.pt", lambda p: p.write_bytes(b"")), "out7", None
    yield "8 full disk at checkpoint", train(d["ann"], None, "solver.checkpoint_period=1"), "run8", FULL_DISK
    yield "9a empty training set", train(empty_set), "run9a", None
    yield "9b corrupt training image", train(d["ann"], _corrupt_copy(root, d), "solver.max_iter=3"), "run9b", None  # an epoch
    yield "10a --device cuda:5", predict([d["imgs"]], "--device", "cuda:5"), "out10a", None
    yield "10b r18 weights, --model r50", predict([d["imgs"]], preset="maskrcnn_r50_fpn"), "out10b", None


def _run(argv: list[str], out: str | None, runner: str | None) -> dict:
    out_path = None if out is None else Path(tempfile.mkdtemp(prefix="out-")) / out
    argv = list(argv) + ([] if out_path is None else ["--out", str(out_path)])
    if runner is not None:  # the same arguments, through `runner` instead of `python -m maskrcnn`
        argv = [sys.executable, "-c", runner, *argv[3:]]

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, preexec_fn=limit, env=env)
        code, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, err = "timeout", (exc.stderr or b"").decode(errors="replace")
    lines = [ln for ln in err.splitlines() if ln.strip() and not PROGRESS.match(ln)]
    return {"exit": code, "stderr_lines": len(lines), "last_line": lines[-1] if lines else "",
            "out": _listing(out_path)}


def _listing(path: Path | None) -> str:
    if path is None:
        return "-"
    if not path.exists():
        return "nothing written"
    names = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and "tb" not in p.parts)
    shown = ", ".join(names[:6]) + (f", ... ({len(names)} files)" if len(names) > 6 else "")
    if (path / "results.json").is_file():
        try:
            shown += f"; results.json: {len(json.loads((path / 'results.json').read_text()))} detections"
        except ValueError:
            shown += "; results.json unreadable"
    return shown or "empty folder"


def _png(path: Path, h: int, w: int, seed: int = 0) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _bomb(path: Path) -> None:
    """A 1x1 PNG whose header claims 60000 x 60000."""
    _png(path, 1, 1)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 60000, 60000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def _old_format_model(path: Path) -> None:
    import torch

    torch.save(torch.nn.Linear(2, 2), path, _use_new_zipfile_serialization=False)


def _corrupt_copy(root: Path, d: dict) -> Path:
    images = root / "corrupt_images"
    shutil.copytree(d["images"], images)
    (images / "000002.png").write_text("not an image")
    return images


if __name__ == "__main__":
    main()
