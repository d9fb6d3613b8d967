"""`maskrcnn eval`: COCO metrics of a results file, or of a model run over the GT images."""

from __future__ import annotations

import json
from pathlib import Path


from ..cli import add_set_option, add_tta_option, tta_overrides
from ..config import parse_overrides
from ..data import formats
from ..evaluation.evaluator import evaluate_model, evaluate_results_file, format_table
from ..evaluation.lvis_eval import MAX_DETS, evaluate_lvis, import_lvis
from ..errors import UserError
from ..fileio import check_output_dir, write_json_atomic


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn eval` to the argparse `subparsers` as `name`: its options and `run`."""
    parser = subparsers.add_parser(
        name, help="COCO bbox/segm/keypoints metrics; writes results.json and metrics.json",
        description="Either --results RESULTS.json (score existing detections) or "
                    "--model PRESET [--weights FILE] --images DIR (run a model first).")
    parser.add_argument("--data", required=True,
                        help="ground truth: a COCO json or any export convert-dataset reads "
                             "(converted into OUT/data/gt)")
    parser.add_argument("--out", required=True, help="folder for results.json and metrics.json")
    parser.add_argument("--results", help="COCO results json to score (no model)")
    parser.add_argument("--model", help="model preset name, e.g. maskrcnn_r50_fpn")
    parser.add_argument("--weights", help="weights file for --model")
    parser.add_argument("--images", help="folder the GT file_name entries are relative to")
    parser.add_argument("--score-thresh", type=float, default=None,
                        help="drop detections scoring below this (default: keep all)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per model call")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="inference path: fp32 (norms folded) or bf16 features (channels-last)")
    add_set_option(parser, "model overrides passed to load_model, e.g. min_size=600 "
                           "model.box.nms_thresh=0.6")
    add_tta_option(parser)
    parser.add_argument("--format", choices=["coco", "cityscapes", "lvis"], default="coco",
                        help="cityscapes: also score instance AP / AP50 with the official "
                             "cityscapesscripts (--data from convert-dataset --format cityscapes, "
                             "--images the Cityscapes root); lvis: --data is an LVIS json, scored by "
                             "the official LVIS API (AP, APr/APc/APf; a model keeps 300 detections per "
                             "image and no score threshold)")
    parser.add_argument("--report", action="store_true",
                        help="also write per-class AP, PR curves, the COCO error breakdown, a "
                             "confusion matrix, a score sweep, worst/best images and report.html")
    parser.set_defaults(run=run)


def run(args) -> int:
    """`maskrcnn eval`: score `--results` (a COCO results json) or run `--model` over the `--images`
    of the ground truth `--data` (a COCO json, or a labelling tool's export converted as `train`
    converts it), then write OUT/results.json and OUT/metrics.json (COCO bbox /
    segm / keypoints AP as fractions 0..1) and print the table; with `--format cityscapes` or
    `lvis` also the official benchmark's numbers, with `--report` the per-class report and
    report.html. Returns 0, or 1 when some images could not be read (they are left out and named).

    Raises:
        UserError: neither or both of `--results` and `--model`, `--model` without `--images`
            (LVIS; for COCO ground truth the image folder is found as `train` finds it),
            `--format cityscapes` without `--images`, a missing lvis package, unreadable inputs.
    """
    if bool(args.results) == bool(args.model):
        raise UserError("give exactly one of --results RESULTS.json or --model PRESET")
    if args.format == "cityscapes" and not args.images:
        raise UserError("--format cityscapes needs --images CITYSCAPES_ROOT (with gtFine/ and leftImg8bit/)")
    check_output_dir(args.out)
    if args.format == "coco":
        formats.use_exports(args, Path(args.out) / "data", data_name="gt")  # any tool's export -> COCO
    failed = []
    if args.format == "lvis":
        import_lvis()  # before any work: the package must be there
    if args.results:
        metrics = evaluate_results_file(args.results, args.data, args.out)
    else:
        if not args.images:
            raise UserError("--model needs --images DIR (the folder of the GT images)")
        from .. import load_model

        lvis = {"box_detections_per_img": MAX_DETS, "box_score_thresh": 0.0} if args.format == "lvis" else {}
        model = load_model(args.model, weights=args.weights, precision=args.precision,
                           **lvis, **tta_overrides(args), **parse_overrides(args.set))
        metrics = evaluate_model(model, args.images, args.data, args.out, args.score_thresh,
                                 args.batch_size, failed=failed)
    print(format_table(metrics))
    if args.format == "cityscapes":
        metrics = {**metrics, **_cityscapes(args)}
    if args.format == "lvis":
        metrics = {**metrics, **_lvis(args)}
    print(f"\nwrote {args.out}/results.json and {args.out}/metrics.json")
    if args.report:
        from ..evaluation.report import write_report

        results = json.loads((Path(args.out) / "results.json").read_text())
        page = write_report(args.out, args.data, results, metrics, args.images)
        print(f"wrote the report: {page}")
    if failed:
        print(f"{len(failed)} images could not be read and are left out of the metrics: {', '.join(failed)}")
    return 1 if failed else 0


def _lvis(args) -> dict[str, float]:
    """The LVIS API's numbers on results.json, added to metrics.json and printed."""
    results = json.loads((Path(args.out) / "results.json").read_text())
    metrics = evaluate_lvis(results, args.data)
    print("\nLVIS (official API): " + ", ".join(f"{k.removeprefix('lvis/')} {v:.2f}" for k, v in metrics.items()))
    _merge_metrics(args.out, metrics)
    return metrics


def _cityscapes(args) -> dict[str, float]:
    """The benchmark's numbers, added to metrics.json and printed."""
    from ..data.coco import load_json
    from ..evaluation.cityscapes_eval import evaluate_cityscapes, format_cityscapes

    results = json.loads((Path(args.out) / "results.json").read_text())
    scores = evaluate_cityscapes(results, load_json(args.data), args.images)
    _merge_metrics(args.out, scores)
    print("\n" + format_cityscapes(scores))
    return scores


def _merge_metrics(out, extra: dict[str, float]) -> None:
    metrics_file = Path(out) / "metrics.json"
    write_json_atomic(metrics_file, {**json.loads(metrics_file.read_text()), **extra})

