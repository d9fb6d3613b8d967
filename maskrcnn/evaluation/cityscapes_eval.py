"""Cityscapes instance-level evaluation (the paper's Table 7: AP and AP50) through the official
`cityscapesscripts` package, on COCO results whose category ids are Cityscapes label ids (as
`convert-dataset --format cityscapes` writes them).

The results are exported in the benchmark's submission format (one `<city>_<seq>_<frame>.txt`
per image listing `masks/<file>.png <labelID> <confidence>`, masks as 0/255 PNGs) and scored
against the `gtFine/.../*_gtFine_instanceIds.png` beside each image's `leftImg8bit` file, with
the benchmark's own overlaps (0.50:0.95), minimum region size (100 px) and label set. Their
ground-truth cache goes to a temporary folder with the exported predictions.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.cityscapes import GT_SUFFIX, IMAGE_SUFFIX, INSTANCE_CLASSES
from ..errors import DatasetError, UserError
from ..ops.rle import segmentation_to_mask


def evaluate_cityscapes(results: list[dict], gt_data: dict, root) -> dict[str, float]:
    """{"cityscapes/AP", "cityscapes/AP50", "cityscapes/<class>/AP", ".../AP50"}; a class without
    ground truth (NaN in the benchmark's output) is left out."""
    try:
        from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as benchmark
    except ModuleNotFoundError:
        raise UserError("--format cityscapes scores with the official cityscapesscripts: "
                        "pip install 'maskrcnn[cityscapes]'") from None
    root = Path(root).resolve()
    gt_files = [ground_truth_file(im["file_name"], root) for im in gt_data["images"]]
    with tempfile.TemporaryDirectory(prefix="maskrcnn-cityscapes-") as work:
        predictions = export_predictions(results, gt_data, Path(work) / "results")
        args = copy.copy(benchmark.args)
        args.gtInstancesFile = str(Path(work) / "gtInstances.json")
        args.predictionPath, args.predictionWalk = str(Path(work) / "results"), None
        args.JSONOutput, args.quiet, args.colorized = False, True, False
        with _numpy_in1d(), contextlib.redirect_stdout(io.StringIO()) as log:
            try:
                averages = _benchmark_steps(benchmark, predictions, [str(f) for f in gt_files], args)
            except SystemExit:  # the scripts report errors by printing and exiting
                raise UserError(f"cityscapesscripts: {log.getvalue().strip()[-300:]}") from None
    metrics = {"cityscapes/AP": float(averages["allAp"]), "cityscapes/AP50": float(averages["allAp50%"])}
    for name, values in averages["classes"].items():
        if not np.isnan(values["ap"]):  # NaN: no ground truth of that class (not valid JSON)
            metrics[f"cityscapes/{name}/AP"] = float(values["ap"])
            metrics[f"cityscapes/{name}/AP50"] = float(values["ap50%"])
    return metrics


def ground_truth_file(file_name: str, root: Path) -> Path:
    """leftImg8bit/<split>/<city>/<name>_leftImg8bit.png -> gtFine/.../<name>_gtFine_instanceIds.png"""
    parts = Path(file_name).parts
    if len(parts) < 2 or parts[0] != "leftImg8bit" or not file_name.endswith(IMAGE_SUFFIX):
        raise DatasetError(f"image '{file_name}' is not a Cityscapes leftImg8bit/.../*{IMAGE_SUFFIX} "
                           "file (convert the annotations with convert-dataset --format cityscapes)")
    name = parts[-1][: -len(IMAGE_SUFFIX)] + GT_SUFFIX
    path = root.joinpath("gtFine", *parts[1:-1], name)
    if not path.is_file():
        raise DatasetError(f"{path}: ground truth of image '{file_name}' not found (--images must be "
                           "the Cityscapes root holding gtFine/ and leftImg8bit/)")
    return path


def export_predictions(results: list[dict], gt_data: dict, folder: Path) -> list[str]:
    """Write the submission files; returns one prediction txt per image, in `images` order."""
    (folder / "masks").mkdir(parents=True)
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in gt_data["images"]}
    for r in results:
        if "segmentation" in r and r["category_id"] in INSTANCE_CLASSES and r["image_id"] in by_image:
            by_image[r["image_id"]].append(r)
    files = []
    for image in gt_data["images"]:
        stem = Path(image["file_name"]).name[: -len(IMAGE_SUFFIX)]
        lines = []
        for i, r in enumerate(by_image[image["id"]]):
            mask = segmentation_to_mask(r["segmentation"], image["height"], image["width"])  # (H, W)
            Image.fromarray(mask * 255).save(folder / "masks" / f"{stem}_{i}.png")
            lines.append(f"masks/{stem}_{i}.png {r['category_id']} {r.get('mask_score', r['score'])}\n")
        (folder / f"{stem}.txt").write_text("".join(lines))
        files.append(str(folder / f"{stem}.txt"))
    return files


def _benchmark_steps(benchmark, predictions: list[str], gt_files: list[str], args) -> dict:
    """The steps of the scripts' `evaluateImgLists`, in its order, without its debug dump of
    matches.json (written into the working folder, and failing on numpy 2's integer types)."""
    benchmark.setInstanceLabels(args)
    gt_instances = benchmark.getGtInstances(gt_files, args)
    matches = benchmark.matchGtWithPreds(predictions, gt_files, gt_instances, args)
    return benchmark.computeAverages(benchmark.evaluateMatches(matches, args), args)


@contextlib.contextmanager
def _numpy_in1d():
    """cityscapesscripts 2.3.0 (the latest) calls `np.in1d`, which numpy 2.4 removed; numpy's
    stated replacement, `np.isin(...).ravel()`, stands in while the scripts run."""
    if hasattr(np, "in1d"):
        yield
        return
    np.in1d = lambda a, b, *args, **kwargs: np.isin(a, b, *args, **kwargs).ravel()
    try:
        yield
    finally:
        del np.in1d


def format_cityscapes(metrics: dict[str, float]) -> str:
    """A text table of `evaluate_cityscapes`'s numbers (fractions 0..1) in AP points (0..100): AP and
    AP50 over all classes, then per instance class ("-" where the class has no number)."""
    lines = [f"{'cityscapes':<14}{'AP':>8}{'AP50':>8}",
             f"{'all':<14}{100 * metrics['cityscapes/AP']:>8.2f}{100 * metrics['cityscapes/AP50']:>8.2f}"]
    for name in INSTANCE_CLASSES.values():
        values = [metrics.get(f"cityscapes/{name}/{m}") for m in ("AP", "AP50")]
        lines.append(f"{name:<14}" + "".join("       -" if v is None else f"{100 * v:>8.2f}" for v in values))
    return "\n".join(lines)
