"""`maskrcnn synth`: write a synthetic-shapes COCO dataset (images/ + annotations.json)."""

from __future__ import annotations

from ..data.synthetic import STYLES, write_synthetic_dataset
from ..errors import UserError
from ..fileio import check_output_dir


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn synth` to the argparse `subparsers` as `name`: its options and `run`."""
    parser = subparsers.add_parser(
        name, help="generate a COCO-format dataset of overlapping circles, triangles and squares")
    parser.add_argument("--out", required=True, help="output folder (images/ + annotations.json)")
    parser.add_argument("--num-images", type=int, required=True, help="how many images to draw")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same dataset")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--style", choices=STYLES, default="shapes",
                        help="shapes: plain filled shapes; quality: shapes whose mask quality varies "
                        "independently of their class (thin spokes, camouflage, blur, occluding bars)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """`maskrcnn synth`: draw `--num-images` seeded synthetic images of `--size` px squared into
    OUT/images/ with their instances in OUT/annotations.json (COCO). Returns 0.

    Raises:
        UserError: `--num-images` < 1 or `--size` < 32, an unwritable `--out`.
    """
    if args.num_images < 1 or args.size < 32:
        raise UserError("--num-images must be >= 1 and --size >= 32")
    check_output_dir(args.out)
    ann_file = write_synthetic_dataset(args.out, args.num_images, args.seed, args.size, args.style)
    print(f"wrote {args.num_images} images to {ann_file.parent / 'images'} and {ann_file}")
    return 0
