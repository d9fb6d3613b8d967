"""Issue 18's and issue 25's hostile-but-ordinary inputs against the `maskrcnn` command line, each in its own
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
    parser.add_argument("--match", help="run the cases whose name holds this text, e.g. 25-")
    parser.add_argument("--in-process", action="store_true",
                        help="call maskrcnn.cli.main in this process (no memory cap or timeout; "
                             "much faster on a loaded machine)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        data = _setup(root)
        rows = []
        for name, argv, out, runner in _cases(root, data):
            if (args.only and name not in args.only) or (args.match and args.match not in name):
                continue
            run = _run_in_process if args.in_process and runner is None else _run
            rows.append({"case": name, **run(argv, out, runner)})
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
    """(name, argv, --out folder name, or an existing --out folder that argv names, or None when
    argv has its own --out; python code to run instead of `python -m maskrcnn` or None)."""
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
    yield from _issue25_cases(root, d, coco, train, predict, cli)


def _issue25_cases(root: Path, d: dict, coco: dict, train, predict, cli):
    """Issue 25: malformed COCO files, config ranges, odd images and folders, leftovers."""

    def coco_with(name: str, change) -> Path:
        data = json.loads(json.dumps(coco))
        change(data)
        path = root / f"{name}.json"
        path.write_text(json.dumps(data))
        return path

    def check(ann):
        return [*cli, "check-data", "--data", str(ann), "--images", str(d["images"])]

    def gt_eval(ann, detections):
        path = root / f"{ann.stem}-results.json"
        path.write_text(json.dumps(detections))
        return [*cli, "eval", "--results", str(path), "--data", str(ann)]

    first = coco["annotations"][0]
    good = {"image_id": first["image_id"], "category_id": first["category_id"], "score": 0.9,
            "bbox": first["bbox"], "segmentation": first["segmentation"]}
    not_object = coco_with("ann5", lambda c: c["annotations"].append(5))
    no_cat_id = coco_with("nocatid", lambda c: c["categories"][0].pop("id"))
    wrong_rle = coco_with("wrongrle", lambda c: ([im.pop("width") for im in c["images"]],
                                                  [im.pop("height") for im in c["images"]],
                                                  c["annotations"][0]["segmentation"].update(size=[32, 128])))
    no_segm = coco_with("nosegm", lambda c: c["annotations"][0].pop("segmentation"))
    same_name = coco_with("samename", lambda c: c["categories"][1].update(name=c["categories"][0]["name"]))
    bom = root / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + d["ann"].read_bytes())
    yield "25-2a annotation 5: check-data", check(not_object), "out25_2a", None
    yield "25-2b annotation 5: train", train(not_object), "run25_2b", None
    yield "25-2c annotation 5: eval", gt_eval(not_object, [good]), "out25_2c", None
    yield "25-3 category without id", train(no_cat_id), "run25_3", None
    yield "25-4a no image size, RLE: train", train(wrong_rle, None, "solver.max_iter=6"), "run25_4a", None
    yield "25-4b no image size, RLE: check", check(wrong_rle), "out25_4b", None
    yield "25-4c no image size: eval", gt_eval(wrong_rle, [good]), "out25_4c", None
    yield "25-5 eval GT without segm", gt_eval(no_segm, [good]), "out25_5", None
    bad_size = dict(good, segmentation=dict(good["segmentation"], size=[32, 128]))
    yield "25-6 results RLE size", gt_eval(d["ann"], [bad_size]), "out25_6", None
    yield "25-7 mask.resolution=0", train(d["ann"], None, "model.mask.resolution=0"), "run25_7", None
    yield "25-8 same category name", check(same_name), "out25_8", None
    yield "25-9 input.min_size=[-1]", train(d["ann"], None, "input.min_size=[-1]"), "run25_9", None
    yield "25-10 float32 TIFF", predict([_float_tiff(root / "f.tif")]), "out25_10", None
    yield "25-11 GIF in a folder", predict([_folder_with(root, "gif", d, _gif)]), "out25_11", None
    yield "25-12 symlink loop", predict([_folder_with(root, "loop", d, _loop)]), "out25_12", None
    yield "25-13 folder x.jpg", predict([_folder_with(root, "dirjpg", d, lambda p: p.mkdir())]), "out25_13", None
    stale = root / "run25_15"
    stale.mkdir()
    (stale / ".model_final.pt.999999.0123abcd.tmp").write_bytes(b"x" * 1000)
    yield "25-15 stale temp of kill -9", train(d["ann"], None, "--out", str(stale)), stale, None
    calibration = root / "calib"
    calibration.mkdir()
    (calibration / "a.png").write_text("not an image")
    yield "25-16a int8, bad calibration", [*cli, "export", "--model", "maskrcnn_r18_fpn", "--weights",
                                         str(d["weights"]), "--quantize", "int8", "--calibration-images",
                                         str(calibration), "--out", str(root / "m.onnx")], None, None
    yield "25-16b json with BOM", check(bom), "out25_16b", None


def _float_tiff(path: Path) -> Path:
    """40 x 50 float32 (mode F) with values in [0, 1]."""
    pixels = np.random.default_rng(0).random((40, 50), dtype=np.float32)
    Image.fromarray(pixels, mode="F").save(path)
    return path


def _gif(path: Path) -> None:
    frames = [Image.fromarray(np.full((30, 40, 3), v, np.uint8)) for v in (60, 200)]
    frames[0].save(path.with_suffix(".gif"), save_all=True, append_images=frames[1:], duration=100)


def _loop(path: Path) -> None:
    path.symlink_to(path.name)  # x.jpg -> x.jpg


def _folder_with(root: Path, name: str, d: dict, make) -> Path:
    folder = root / name
    shutil.copytree(d["imgs"], folder)
    make(folder / "x.jpg")
    return folder


def _run(argv: list[str], out: str | Path | None, runner: str | None) -> dict:
    """`out`: a name (a new --out folder of that name is added), an existing folder (argv has
    its --out; listed afterwards) or None (argv has its own --out; not listed)."""
    if isinstance(out, Path):
        out_path = out
    else:
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


def _run_in_process(argv: list[str], out: str | Path | None, runner: None) -> dict:
    """As _run, through maskrcnn.cli.main in this process (argv[3:] after `python -m maskrcnn`)."""
    import contextlib
    import io

    from maskrcnn.cli import main

    if isinstance(out, Path):
        out_path = out
    else:
        out_path = None if out is None else Path(tempfile.mkdtemp(prefix="out-")) / out
        argv = list(argv) + ([] if out_path is None else ["--out", str(out_path)])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv[3:])
        except SystemExit as exc:  # argparse
            code = exc.code
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip() and not PROGRESS.match(ln)]
    return {"exit": code, "stderr_lines": len(lines), "last_line": lines[-1] if lines else "",
            "out": _listing(out_path)}


def _listing(path: Path | None) -> str:
    if path is None:
        return "-"
    if not path.exists():
        return "nothing written"
    names = sorted(str(p.relative_to(path)) for p in path.rglob("*")
                   if p.is_file() and "tb" not in p.relative_to(path).parts)
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
