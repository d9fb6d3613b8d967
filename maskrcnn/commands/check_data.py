"""`maskrcnn check-data`: validate a COCO dataset as training reads it, with statistics,
warnings and a grid of ground-truth overlays. A dataset with errors: check.json and the report
still written, then one line on stderr naming the first error and exit status 2 (a user error,
like every malformed input; 1 is kept for internal errors)."""

from __future__ import annotations

from ..cli import add_set_option
from ..config import apply_overrides, is_auto
from ..data import formats
from ..errors import DatasetError, UserError
from ..data.check import check_dataset, format_report, overlay_grid
from ..fileio import atomic_write, check_output_dir, write_json_atomic
from ..presets import get_preset


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn check-data` to the argparse `subparsers` as `name`: its options and `run`."""
    parser = subparsers.add_parser(
        name, help="validate a COCO dataset: errors, statistics, warnings, overlay grid",
        description="Writes OUT/check.json (errors, warnings, statistics) and OUT/overlays.png; "
                    "exits 2 when the dataset has errors.")
    parser.add_argument("--data", required=True, help="COCO annotation json, or any export "
                        "convert-dataset reads (converted into OUT/data/)")
    parser.add_argument("--images", default=None, help="images folder (default: as training finds it)")
    parser.add_argument("--out", required=True, help="folder for check.json and overlays.png")
    parser.add_argument("--model", default="maskrcnn_r50_fpn",
                        help="preset whose input size and anchors the warnings assume ('auto' "
                             "sizes, as in maskrcnn_effl0_fpn: chosen from this data as training does)")
    add_set_option(parser, "config overrides, e.g. input.max_size=1024 model.anchors.sizes=[16,32,64,128,256]")
    parser.set_defaults(run=run)


def run(args) -> int:
    """`maskrcnn check-data`: validate `--data` (COCO json or any export convert-dataset reads) as
    training would read it with the `--model` preset's input size and anchors; write
    OUT/check.json (errors, warnings, statistics) and OUT/overlays.png (ground truth drawn on a
    grid of images), print the report. Returns 0 when the dataset has no errors.

    Raises:
        DatasetError: the dataset has errors (after check.json is written), or `--data` is missing.
        UserError: unknown preset or bad `--set` (ConfigError), unwritable `--out` (OutputError).
    """
    cfg = apply_overrides(get_preset(args.model), args.set)
    out = check_output_dir(args.out)
    formats.use_exports(args, out / "data")
    run_sizes(cfg, args.data, args.images)  # after use_exports: args.data is COCO json
    result, dataset = check_dataset(args.data, args.images, max(cfg.input.min_size),
                                    cfg.input.max_size, min(cfg.model.anchors.sizes))
    write_json_atomic(out / "check.json", result.to_dict())
    print(format_report(result))
    written = [out / "check.json"]
    if dataset is not None:
        grid = overlay_grid(dataset)
        atomic_write(out / "overlays.png", lambda f: grid.save(f, format="PNG"))
        written.append(out / "overlays.png")
    print(f"\n{len(result.errors)} errors, {len(result.warnings)} warnings; wrote "
          + ", ".join(str(p) for p in written))
    if result.errors:
        raise DatasetError(f"{len(result.errors)} errors (all in {out / 'check.json'}); the first: "
                           f"{result.errors[0]}")
    return 0


def run_sizes(cfg, ann_file, image_dir) -> None:
    """Input size and anchors as a training run on this data would choose them (`auto`); an
    unreadable file leaves the defaults (check_dataset then reports what is wrong)."""
    from ..data.coco import CocoDataset
    from ..training.auto_size import fill_auto_defaults, resolve_auto_sizes

    if is_auto(cfg.input.min_size) or is_auto(cfg.model.anchors.sizes):
        try:
            resolve_auto_sizes(cfg, CocoDataset(ann_file, image_dir, check_files=False))
        except UserError:
            fill_auto_defaults(cfg)
