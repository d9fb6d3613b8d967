"""`maskrcnn convert-dataset`: turn a folder of mask PNGs into a COCO json (RLE masks)."""

from __future__ import annotations

from pathlib import Path

from ..data.mask_folders import InstanceIdPngDataset, PerInstancePngDataset, to_coco
from ..fileio import write_json_atomic
from ..errors import DatasetError

FORMATS = {"pennfudan": InstanceIdPngDataset, "mask-folders": PerInstancePngDataset}


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="convert a mask-PNG dataset to COCO json",
        description="pennfudan: PNGImages/*.png + PedMasks/*_mask.png (instance ids); "
                    "mask-folders: <id>/images/<id>.png + <id>/masks/*.png (one PNG per instance). "
                    "file_name entries are relative to SRC: evaluate or train with --images SRC.")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("src", help="dataset root folder")
    parser.add_argument("--out", required=True, help="COCO json to write")
    parser.add_argument("--class-name", default=None, help="name of the single category")
    parser.set_defaults(run=run)


def run(args) -> int:
    if not Path(args.src).is_dir():
        raise DatasetError(f"{args.src}: dataset folder not found")
    kwargs = {"class_name": args.class_name} if args.class_name else {}
    dataset = FORMATS[args.format](args.src, **kwargs)
    data = to_coco(dataset)
    write_json_atomic(args.out, data)
    print(f"wrote {len(data['images'])} images, {len(data['annotations'])} instances to {args.out} "
          f"(file names relative to {args.src})")
    return 0
