"""`maskrcnn predict`: run a model on images or folders; overlays + one COCO results json."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from tqdm import tqdm

from ..engine.evaluator import instances_to_results, write_json_atomic
from ..errors import ImageError, UserError
from .evaluate import _overrides

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
logger = logging.getLogger(__name__)


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="detect instances in images; write overlays and results.json")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    parser.add_argument("--model", required=True, help="model preset, e.g. maskrcnn_r50_fpn")
    parser.add_argument("--weights", help="weights file (ours or torchvision's); omit for random weights")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="keep detections scoring at least this")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override passed to load_model (repeatable)")
    parser.set_defaults(run=run)


def collect_images(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted). Missing paths are errors."""
    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise ImageError(f"{path}: no such image file or folder")
    if not paths:
        raise UserError(f"no images found in {', '.join(inputs)}")
    return paths


def run(args) -> int:
    from .. import load_model
    from ..data.images import read_image
    from ..visualize import draw_instances

    paths = collect_images(args.inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {"box_score_thresh": args.score_thresh, **_overrides(args.set)}
    model = load_model(args.model, weights=args.weights, device=args.device, **overrides)
    category_ids = model.cfg.model.category_ids
    results, failed, found, start = [], [], 0, time.perf_counter()
    for image_id, path in enumerate(tqdm(paths, desc="predict", unit="img", disable=len(paths) < 2)):
        try:
            image = read_image(path)
        except ImageError as exc:
            logger.warning("skipped: %s", exc)
            failed.append(str(path))
            continue
        instances = model.predict(image)[0].to("cpu")
        found += len(instances)
        for result in instances_to_results(instances, image_id, category_ids):
            results.append({**result, "file_name": str(path)})
        _save_png(draw_instances(image, instances), out / f"{path.stem}.png")
    write_json_atomic(out / "results.json", results)
    seconds = (time.perf_counter() - start) / max(len(paths) - len(failed), 1)
    print(f"{len(paths) - len(failed)} images, {found} instances (score >= {args.score_thresh}), "
          f"{seconds:.2f} s/image; wrote {out}/results.json and overlays"
          + (f"; {len(failed)} unreadable images skipped: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _save_png(image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
