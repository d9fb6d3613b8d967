"""POST /v1/export: the page's answers -> a labelling tool's pre-annotation file.

Body: `{"images": [{"file_name", "width", "height", "instances": [{"label_name", "score",
"mask": RLE}]}]}` (what /v1/predict answered, any subset of instances). Query: `format` (one of
export_formats.FORMATS), `polygon_tolerance` (px, default 1). Answer: the one file of the format,
or a zip when it writes several (LabelMe: one json per image). Masks are traced as in
`maskrcnn predict --export`.
"""

from __future__ import annotations

import io
import zipfile

from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..ops.rle import decode_rles
from .schema import Rle


class ExportInstance(BaseModel):
    """One instance to export: its class name, score (0..1) and mask (COCO RLE at its image's size)."""

    label_name: str
    score: float
    mask: Rle


class ExportImage(BaseModel):
    """One image to export: `file_name` as the tool should name it, its size in pixels and its
    instances."""

    file_name: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    instances: list[ExportInstance]


class ExportRequest(BaseModel):
    """The body of POST /v1/export: at least one image."""

    images: list[ExportImage] = Field(min_length=1)


def add_export_route(app: FastAPI, class_names) -> None:
    """Adds POST /v1/export to `app`; `class_names` (background first) are the tools' labels."""

    @app.post("/v1/export")
    async def export(body: ExportRequest, format: str, polygon_tolerance: float = 1.0):
        """Turn predictions (what /v1/predict answered, any subset of instances) into `format`'s
        pre-annotation file for a labelling tool (labelme, cvat, label-studio, via, coco): masks
        traced to polygons simplified to `polygon_tolerance` pixels. Answers the file as a download,
        or a zip when the format writes several files. 400: unknown format, negative tolerance, a mask
        whose size is not its image's."""
        from ..export_formats import FORMATS

        if format not in FORMATS:
            raise HTTPException(400, f"format {format}: unknown (one of {', '.join(FORMATS)})")
        if polygon_tolerance < 0:
            raise HTTPException(400, f"polygon_tolerance {polygon_tolerance}: must be >= 0")
        name, data = await run_in_threadpool(_export, body, format, polygon_tolerance, class_names[1:])
        kind = "application/zip" if name.endswith(".zip") else "application/octet-stream"
        return Response(data, media_type=kind, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _export(body: ExportRequest, format: str, tolerance: float, class_names) -> tuple[str, bytes]:
    """-> (download name, bytes): the single file of the format, or a zip of its files."""
    from ..export_formats import export_files, traced

    images = []
    for image in body.images:
        for instance in image.instances:
            if tuple(instance.mask.size) != (image.height, image.width):
                raise HTTPException(400, f"{image.file_name}: a mask of size {instance.mask.size} "
                                         f"in a {image.height} x {image.width} image")
        masks = decode_rles([i.mask.model_dump() for i in image.instances], image.height, image.width)
        images.append(traced(image.file_name, masks > 0, [i.label_name for i in image.instances],
                             [i.score for i in image.instances], tolerance))
    files = export_files(format, images, list(class_names))
    if len(files) == 1:
        (name, data), = files.items()
        return name.rsplit("/", 1)[-1], data
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return f"{format}.zip", buffer.getvalue()
