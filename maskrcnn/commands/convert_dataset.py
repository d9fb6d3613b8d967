"""`maskrcnn convert-dataset`: turn a foreign dataset (annotation tools, mask PNGs) into COCO json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import formats
from ..data.coco_builder import parse_classes
from ..errors import DatasetError, UserError
from ..fileio import check_output_file, write_json_atomic

FORMATS = """\
formats (SRC), --format auto (the default) recognises each from the file's content:
  via           VIA 1.x / 2.x json (polygon, rect, circle, ellipse; regions as list or dict);
                images beside the json; the class is a region attribute (--class-attribute,
                default: the only one); no region attribute: one class, --class-name, default
                the json's folder name (its parent's for train/val/test folders)
  via3          VIA 3 project json (polygon, rectangle, circle, ellipse), class as for via
  labelme       folder of LabelMe 3.x-5.x json (polygon, rectangle, circle, mask; imageData or
                imagePath; group_id joins parts of one object)
  cvat          CVAT for images 1.1 annotations.xml, or its folder (polygon, box, mask)
  label-studio  Label Studio JSON export (polygonlabels, rectanglelabels, brushlabels)
  coco          COCO json, also Roboflow's (its category 0 dropped), CVAT's COCO 1.0 and
                Label Studio's COCO export (the images folder found beside it)
  yolo-seg      Ultralytics folder: images/... + labels/....txt + data.yaml / classes.txt;
                Roboflow's YOLOv5/v8 export (train/, valid/, test/ each with images/, labels/)
  cityscapes    Cityscapes root with gtFine/ and leftImg8bit/ (--split; the 8 instance classes)
  pennfudan     PNGImages/*.png + PedMasks/*_mask.png (instance ids)
  mask-folders  <id>/images/<id>.png + <id>/masks/*.png (one PNG per instance)

Categories are numbered 1..K in the order --classes gives, else the order the format declares
(VIA options, CVAT labels, YOLO class list), then other names sorted. Images without objects
are kept. Polygons reaching outside their image are clipped to it. file_name entries are
relative to the folder printed at the end: train with --images. Paths inside annotation files
never leave the dataset folder. train and check-data also take any of these directly (--data).
"""


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn convert-dataset` to the argparse `subparsers` as `name`: its options, the list
    of formats as epilog, and `run`."""
    parser = subparsers.add_parser(
        name, help="convert a dataset (VIA, LabelMe, CVAT, Label Studio, Roboflow, YOLO-seg, "
                   "Cityscapes, mask PNGs) to COCO json",
        epilog=FORMATS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", default="auto", choices=["auto", *formats.DESCRIPTIONS],
                        help="default: auto, recognised from the file or folder (printed)")
    parser.add_argument("src", help="annotation file or dataset folder (see formats below)")
    parser.add_argument("--out", required=True, help="COCO json to write")
    parser.add_argument("--classes", default=None,
                        help="comma-separated class names: the categories, in this order")
    parser.add_argument("--class-attribute", default=None,
                        help="via, via3: the region attribute with the class")
    parser.add_argument("--split", default=None, help="cityscapes: train, val or test (default: all)")
    parser.add_argument("--class-name", default=None,
                        help="via, via3 without class attribute, pennfudan, mask-folders: name of "
                             "the single category")
    parser.add_argument("--val-out", help="also write a validation json: the last --val-count "
                        "images (in the order converted; sorted names for pennfudan) go there instead")
    parser.add_argument("--val-count", type=int, default=0, help="images held out for --val-out")
    parser.set_defaults(run=run)


def run(args) -> int:
    """`maskrcnn convert-dataset`: convert `src` (format given or recognised from its content) to
    COCO json at `--out`, the last `--val-count` images to `--val-out` instead when given; prints
    what it wrote and the folder the file names are relative to. Returns 0.

    Raises:
        DatasetError: `src` missing or malformed.
        UserError: `--val-out` without a positive `--val-count` (or the reverse), a `--val-count`
            that leaves no training image, unwritable outputs.
    """
    if not Path(args.src).exists():
        raise DatasetError(f"{args.src}: not found")
    check_output_file(args.out)
    if bool(args.val_out) != (args.val_count > 0):
        raise UserError("give --val-out and a positive --val-count together")
    if args.val_out:
        check_output_file(args.val_out)
    data, image_root = convert(args)
    for out, part in zip((args.out, args.val_out), hold_out(data, args.val_count)):
        write_json_atomic(out, part)
        print(f"wrote {len(part['images'])} images, {len(part['annotations'])} instances, "
              f"{len(part['categories'])} classes to {out}; file names are relative to "
              f"{image_root} (train with --images {image_root})")
    return 0


def hold_out(data: dict, count: int) -> list[dict]:
    """[data] when count is 0, else [the first images, the last `count` images] as COCO dicts."""
    if count == 0:
        return [data]
    images = data["images"]
    if count >= len(images):
        raise UserError(f"--val-count {count} leaves no training images of {len(images)}")
    parts = []
    for part in (images[: len(images) - count], images[len(images) - count:]):
        ids = {image["id"] for image in part}
        parts.append({**data, "images": part,
                      "annotations": [a for a in data["annotations"] if a["image_id"] in ids]})
    return parts


def convert(args) -> tuple[dict, Path]:
    """(COCO dict, folder its file names are relative to)."""
    fmt = args.format
    if fmt == "auto":
        fmt, why = formats.detect_format(args.src)
        print(f"format: {fmt} ({why}); give --format to choose another")
    options = formats.Options(classes=parse_classes(args.classes), class_attribute=args.class_attribute,
                              class_name=args.class_name, split=args.split, exclude=args.out)
    return formats.convert(args.src, fmt, options)
