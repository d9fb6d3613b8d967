"""`maskrcnn convert-dataset`: turn a foreign dataset (annotation tools, mask PNGs) into COCO json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.cityscapes import category_ids, read_cityscapes
from ..data.coco_builder import parse_classes
from ..data.cvat import read_cvat
from ..data.labelme import read_labelme
from ..data.mask_folders import InstanceIdPngDataset, PerInstancePngDataset, to_coco
from ..data.via import read_via
from ..data.yolo_seg import read_yolo_seg
from ..errors import DatasetError, UserError
from ..fileio import check_output_file, write_json_atomic

FORMATS = """\
formats (SRC):
  via           VIA 2.x project json (polygon, rect, circle, ellipse); images beside the json;
                the class is a region attribute (--class-attribute, default: the only one)
  labelme       folder of LabelMe json files (polygon, rectangle, circle, mask; imageData or path)
  cvat          CVAT for images 1.1 annotations.xml, or its folder (polygon, box, mask)
  yolo-seg      Ultralytics folder: images/... + labels/....txt + data.yaml / classes.txt
  cityscapes    Cityscapes root with gtFine/ and leftImg8bit/ (--split; the 8 instance classes)
  pennfudan     PNGImages/*.png + PedMasks/*_mask.png (instance ids)
  mask-folders  <id>/images/<id>.png + <id>/masks/*.png (one PNG per instance)

Categories are numbered 1..K in the order --classes gives, else the order the format declares
(VIA options, CVAT labels, YOLO class list), then other names sorted. Images without objects
are kept. file_name entries are relative to the folder printed at the end: train with --images.
"""
_SINGLE_CLASS = {"pennfudan": InstanceIdPngDataset, "mask-folders": PerInstancePngDataset}


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="convert a dataset (VIA, LabelMe, CVAT, YOLO-seg, Cityscapes, mask PNGs) to COCO json",
        epilog=FORMATS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True,
                        choices=["via", "labelme", "cvat", "yolo-seg", "cityscapes", *_SINGLE_CLASS])
    parser.add_argument("src", help="annotation file or dataset folder (see formats below)")
    parser.add_argument("--out", required=True, help="COCO json to write")
    parser.add_argument("--classes", default=None,
                        help="comma-separated class names: the categories, in this order")
    parser.add_argument("--class-attribute", default=None, help="via: the region attribute with the class")
    parser.add_argument("--split", default=None, help="cityscapes: train, val or test (default: all)")
    parser.add_argument("--class-name", default=None,
                        help="pennfudan / mask-folders: name of the single category")
    parser.add_argument("--val-out", help="also write a validation json: the last --val-count "
                        "images (in the order converted; sorted names for pennfudan) go there instead")
    parser.add_argument("--val-count", type=int, default=0, help="images held out for --val-out")
    parser.set_defaults(run=run)


def run(args) -> int:
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
    classes = parse_classes(args.classes)
    for option, value, fmt in (("--class-attribute", args.class_attribute, "via"),
                               ("--split", args.split, "cityscapes")):
        if value and args.format != fmt:
            raise UserError(f"{option} applies to --format {fmt} only")
    if args.format in _SINGLE_CLASS:
        if classes:
            raise UserError(f"--classes does not apply to {args.format}; use --class-name")
        kwargs = {"class_name": args.class_name} if args.class_name else {}
        return to_coco(_SINGLE_CLASS[args.format](args.src, **kwargs)), Path(args.src)
    if args.format == "cityscapes":
        if classes:
            raise UserError("--classes does not apply to cityscapes: its 8 classes and ids are fixed")
        builder, root = read_cityscapes(args.src, args.split)
        return builder.to_coco(builder.declared, category_ids()), root
    readers = {"via": lambda: read_via(args.src, args.class_attribute),
               "labelme": lambda: read_labelme(args.src, exclude=args.out),
               "cvat": lambda: read_cvat(args.src),
               "yolo-seg": lambda: read_yolo_seg(args.src, classes)}
    builder, root = readers[args.format]()
    return builder.to_coco(classes), root
