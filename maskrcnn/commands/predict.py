"""`maskrcnn predict`: run a model on images or folders; overlays + one COCO results json.

An image that cannot be read costs only itself: it is named in a warning, the others are done,
and the exit status is 1 (0 when every image was done). Results are streamed to disk image by
image (`fileio.JsonListWriter`), so an interrupted run keeps what it did. Overlays are named by
the image's file name with its extension (`a.jpg` -> `a.jpg.png`), under as many of its parent
folders as make the name unique, so no two images share an overlay.
"""

from __future__ import annotations

import logging
import time
from argparse import Namespace
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from ..cli import add_set_option, add_tta_option, tta_overrides
from ..config import parse_overrides
from ..data.image_folder import not_a_file, scan_folder
from ..evaluation.evaluator import instances_to_results
from ..fileio import JsonListWriter, atomic_write, check_output_dir
from ..errors import CheckpointError, ImageError, UserError
from ..tiling import check_tile_args, predict_tiled
from ..tracking import Tracker
from ..video import annotate_video, is_video
from . import predict_outputs

BACKENDS = ("torch", "onnxruntime")
TRACK_LOW_SCORE = 0.1  # --track: detections down to this score may continue a track, as in ByteTrack
logger = logging.getLogger(__name__)


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn predict` to the argparse `subparsers` as `name`: its options (with those of
    `predict_outputs`) and `run`."""
    parser = subparsers.add_parser(name, help="detect instances in images; write overlays and results.json")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files or folders of images; or video files (annotated video + "
                             "one JSON line per frame)")
    parser.add_argument("--model", help="model preset, e.g. maskrcnn_r50_fpn (torch backend only: "
                                            "an .onnx file carries its own config)")
    parser.add_argument("--weights", help="weights file (ours or torchvision's; omit for random weights), "
                                          "or for --backend onnxruntime the .onnx file from maskrcnn export")
    parser.add_argument("--backend", default="torch", choices=BACKENDS,
                        help="torch (default) or onnxruntime (runs an exported .onnx)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="keep detections scoring at least this")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="torch backend: fp32 (norms folded, channels-last) or bf16 features (faster)")
    add_set_option(parser, "config overrides passed to load_model")
    add_tta_option(parser)
    parser.add_argument("--tile", type=int, metavar="SIZE",
                        help="large images: run on overlapping SIZE-px tiles at full resolution, merged")
    parser.add_argument("--tile-overlap", type=int, default=64, metavar="PX", help="tile overlap (default 64)")
    parser.add_argument("--track", action="store_true",
                        help="videos: keep one id per object across frames (track_id in the .jsonl, "
                             "a colour per id, NAME_tracks.csv with a row per track)")
    parser.add_argument("--track-buffer", type=int, default=30, metavar="FRAMES",
                        help="--track: frames a lost object keeps its id (default 30)")
    predict_outputs.add_options(parser)
    parser.set_defaults(run=run)


def collect_images(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to their images by `scan_folder` (its skipped entries
    logged, one warning each), each file once. A path given that is not a file or folder is an
    error."""
    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images, skipped = scan_folder(path)
            for entry in skipped:
                logger.warning("skipped %s", entry)
            paths += images
        elif not_a_file(path) is None:
            paths.append(path)
        else:
            reason = "no such image file or folder" if not path.is_symlink() else not_a_file(path)
            raise ImageError(f"{path}: {reason}")
    if not paths:
        raise UserError(f"no images found in {', '.join(inputs)}")
    unique = {}
    for path in paths:  # a file given twice (or inside a folder also given) is done once
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def overlay_names(paths: list[Path]) -> dict[Path, Path]:
    """image path -> overlay path relative to --out: file name + ".png" under the fewest parent
    folders that make it unique (two names never agree on a suffix that made both unique)."""
    parts = {p: p.resolve().parts[1:] for p in paths}  # without the root: names stay under --out
    names, depth = {}, 1
    while len(names) < len(paths):
        pending = [p for p in paths if p not in names]
        counts = Counter(parts[p][-depth:] for p in pending + list(names))
        for p in pending:
            if counts[parts[p][-depth:]] == 1 or depth >= len(parts[p]):
                tail = parts[p][-depth:]
                names[p] = Path(*tail[:-1], tail[-1] + ".png")
        depth += 1
    return names


def run(args) -> int:
    """`maskrcnn predict`: run the model (torch, or an exported .onnx with `--backend onnxruntime`;
    on `--tile` px tiles when given) on every input image, stream OUT/results.json (COCO results
    with `file_name`) and write an overlay PNG per image; `--export` and `--measure` files at the
    end. Videos go to `_run_videos` instead (an annotated .mp4 and a .jsonl each). Returns 0, or 1
    when some images could not be read (each named in a warning, the others done).

    Raises:
        UserError: bad option combinations (checked before any output), no images found, an
            input path that does not exist, a missing model file.
    """
    from ..data.images import read_image
    from ..visualize import draw_instances

    _check_backend_args(args)
    outputs = predict_outputs.ResultOutputs.from_args(args)
    if args.tile:
        check_tile_args(args.tile, args.tile_overlap)
    out = check_output_dir(args.out)
    if any(is_video(p) for p in args.inputs):
        return _run_videos(args)
    paths = collect_images(args.inputs)
    predict, category_ids = _load_tiled_predictor(args)
    overlays = overlay_names(paths)
    failed, found, start = [], 0, time.perf_counter()
    with JsonListWriter(out / "results.json") as results:
        bar = tqdm(paths, desc="predict", unit="img", disable=None if len(paths) > 1 else True)
        for image_id, path in enumerate(bar):
            try:
                image = read_image(path)
            except ImageError as exc:
                logger.warning("skipped %s", exc)
                failed.append(str(path))
                continue
            instances = predict(image)
            found += len(instances)
            results.extend([{**r, "file_name": str(path)}
                            for r in instances_to_results(instances, image_id, category_ids)])
            _save_png(draw_instances(image, instances), out / overlays[path])
            outputs.add(path, image, instances)
    written = outputs.write(out)
    done = len(paths) - len(failed)
    seconds = (time.perf_counter() - start) / max(done, 1)
    print(f"{done} of {len(paths)} images done" if failed else f"{done} images",
          f"{found} instances (score >= {args.score_thresh}), {seconds:.2f} s/image; wrote {out}/results.json "
          "and overlays" + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""), sep=", ")
    if written:
        print(f"also wrote {', '.join(written)} in {out}")
    return 1 if failed else 0


def _check_backend_args(args) -> None:
    """Option errors that need no work, raised before any output is written."""
    if args.backend == "onnxruntime":
        if not args.weights:
            raise UserError("--backend onnxruntime needs --weights MODEL.onnx (written by maskrcnn export)")
        if not Path(args.weights).is_file():
            raise CheckpointError(f"{args.weights}: ONNX model file not found")
        if args.set:
            raise UserError("--set does not apply to --backend onnxruntime: the config is fixed at "
                            "export (use maskrcnn export --set KEY=VALUE)")
    elif not args.model:
        raise UserError("--model is required with --backend torch")


def _load_predictor(args):
    """-> (image -> Instances on the CPU, category ids) for the chosen backend."""
    tta_overrides(args)  # refused with onnxruntime before any work
    if args.backend == "onnxruntime":
        from ..deploy.onnx_runner import OnnxPredictor

        predictor = OnnxPredictor(args.weights, providers=_providers(args.device),
                                  score_thresh=args.score_thresh)
        exported = predictor.info["box"]["score_thresh"]
        if args.score_thresh < exported:
            logger.warning("%s was exported with box_score_thresh=%s: detections scoring below it are "
                           "not in its output (--score-thresh %s)", args.weights, exported, args.score_thresh)
        if args.model and args.model != predictor.name:
            logger.warning("--model %s ignored: %s holds %s", args.model, args.weights, predictor.name)
        return predictor.predict, predictor.category_ids
    from .. import load_model

    overrides = {"box_score_thresh": args.score_thresh, **tta_overrides(args), **parse_overrides(args.set)}
    model = load_model(args.model, weights=args.weights, device=args.device, precision=args.precision,
                       **overrides)
    return (lambda image: model.predict(image)[0].to("cpu")), model.cfg.model.category_ids


def _load_tiled_predictor(args):
    """_load_predictor, on overlapping tiles with --tile."""
    predict, category_ids = _load_predictor(args)
    if not args.tile:
        return predict, category_ids
    per_tile = lambda tiles: [predict(tile) for tile in tiles]  # noqa: E731
    return (lambda image: predict_tiled(per_tile, image, args.tile, args.tile_overlap)), category_ids


def _run_videos(args) -> int:
    """Every input a video: one annotated .mp4 and one .jsonl (a line per frame) each."""
    if not all(is_video(p) for p in args.inputs):
        raise UserError("give videos and images in separate runs of maskrcnn predict")
    for source in args.inputs:
        if not Path(source).is_file():
            raise ImageError(f"{source}: video file not found")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.track_buffer < 0:
        raise UserError(f"--track-buffer {args.track_buffer}: give a number of frames >= 0")
    low = min(TRACK_LOW_SCORE, args.score_thresh)  # ByteTrack's second stage needs the low scores
    predict, category_ids = _load_tiled_predictor(Namespace(**{**vars(args), "score_thresh": low}) if args.track else args)
    for source in args.inputs:
        tracker = Tracker(high_score=args.score_thresh, low_score=low, buffer=args.track_buffer) if args.track else None
        frames, found = annotate_video(predict, source, out, category_ids, tracker)
        tracks = f", {len(tracker.summaries())} tracks" if tracker else ""
        print(f"{source}: {frames} frames, {found} instances (score >= {args.score_thresh}){tracks}; "
              f"wrote {out / Path(source).stem}.mp4 and .jsonl" + (" and _tracks.csv" if tracker else ""))
    return 0


def _providers(device: str) -> list:
    """--device -> onnxruntime execution providers."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    kind, _, index = device.partition(":")
    if kind == "cuda" and (index == "" or index.isdigit()):
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise UserError(f"--device {device}: this onnxruntime has no CUDA provider "
                            "(install onnxruntime-gpu)")
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    raise UserError(f"--device {device}: the onnxruntime backend runs on cpu or cuda[:N]")


def _save_png(image, path: Path) -> None:
    atomic_write(path, lambda f: image.save(f, format="PNG"))
