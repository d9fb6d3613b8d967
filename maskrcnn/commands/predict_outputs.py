"""`maskrcnn predict --export FORMAT --measure`: what predict writes besides results.json.

`add_options(parser)` adds --export, --polygon-tolerance, --measure, --pixel-size;
`ResultOutputs.from_args(args)` checks them before any work; `add(path, image, instances)` per
image keeps only polygons and measurement rows (not masks); `write(out)` writes the files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import UserError
from ..export_formats import FORMATS
from ..fileio import write_bytes_atomic, write_text_atomic
from ..video import is_video


def add_options(parser) -> None:
    """Add `--export`, `--polygon-tolerance`, `--measure` and `--pixel-size` to the predict parser."""
    parser.add_argument("--export", action="append", default=[], metavar="FORMAT",
                        help="also write pre-annotations to correct in a labelling tool: "
                             f"{', '.join(FORMATS)} (repeat for several)")
    parser.add_argument("--polygon-tolerance", type=float, default=1.0, metavar="PX",
                        help="--export polygons are simplified to this many px (default 1; 0: exact)")
    parser.add_argument("--measure", action="store_true",
                        help="write measurements.csv (per instance) and summary.csv (per image and "
                             "class) with scikit-image's regionprops")
    parser.add_argument("--pixel-size", metavar="SIZE",
                        help="--measure lengths and areas in units: the side of a pixel, e.g. 0.5um")


class ResultOutputs:
    """Collects per image what --export and --measure need, writes it at the end."""

    def __init__(self, formats: list[str], tolerance: float, measure: bool, pixel_size,
                 class_names=()):
        self.formats, self.tolerance, self.measure = formats, tolerance, measure
        self.pixel_size, self.class_names = pixel_size, list(class_names)
        self.traced, self.rows = [], []

    @classmethod
    def from_args(cls, args) -> "ResultOutputs":
        """Checks the options (UserError before any output is written)."""
        from ..export_formats import check_format
        from ..measure import PixelSize

        formats = [check_format(f) for f in dict.fromkeys(args.export)]
        if args.polygon_tolerance < 0:
            raise UserError(f"--polygon-tolerance {args.polygon_tolerance}: must be >= 0")
        if args.pixel_size is not None and not args.measure:
            raise UserError("--pixel-size applies to --measure: add --measure")
        if (formats or args.measure) and any(is_video(p) for p in args.inputs):
            raise UserError("--export and --measure apply to images, not videos")
        if (formats or args.measure) and _missing_skimage():
            raise UserError("--export and --measure need scikit-image: pip install 'maskrcnn[measure]'")
        return cls(formats, args.polygon_tolerance, args.measure, PixelSize.parse(args.pixel_size))

    def add(self, path: Path, image, instances) -> None:
        """One image's (3, H, W) tensor and its Instances on the CPU."""
        if not (self.formats or self.measure):
            return
        if not instances.has("masks"):
            raise UserError("--export and --measure need instance masks; this model predicts none")
        from ..export_formats import traced
        from ..measure import measure_masks

        masks = instances.masks.numpy()  # (N, H, W) bool
        self.class_names = self.class_names or list(instances.class_names[1:])
        names, scores = instances.label_names, instances.scores.tolist()
        if self.formats:
            self.traced.append(traced(str(Path(path).resolve()), masks, names, scores, self.tolerance))
        if self.measure:
            pixels = image.permute(1, 2, 0).numpy()  # (H, W, 3)
            self.rows += measure_masks(masks, pixels, names, scores, str(path), self.pixel_size)

    def write(self, out: Path) -> list[str]:
        """Writes the files under `out`; -> their names (a folder once) for the summary line."""
        from ..export_formats import export_files
        from ..measure import summarise

        written = []
        for format in self.formats:
            for name, data in export_files(format, self.traced, self.class_names, root=out).items():
                write_bytes_atomic(out / name, data)
                written.append(name.split("/")[0] + ("/" if "/" in name else ""))
        if self.measure:
            write_text_atomic(out / "measurements.csv", to_csv(self.rows))
            write_text_atomic(out / "summary.csv", to_csv(summarise(self.rows)))
            written += ["measurements.csv", "summary.csv"]
        return list(dict.fromkeys(written))


def to_csv(rows: list[dict]) -> str:
    """Rows -> CSV text with a header (every key of every row, in first-seen order)."""
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["image", "label"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _missing_skimage() -> bool:
    try:
        import skimage  # noqa: F401
    except ImportError:
        return True
    return False
