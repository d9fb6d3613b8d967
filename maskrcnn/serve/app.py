"""The HTTP API and its web page: `create_app(ServedModel(...))` -> a FastAPI app.

GET /health, POST /v1/predict (multipart field `image` or the raw image as the body), POST
/v1/export (answers -> a labelling tool's file, export_route.py), GET / (the page in static/). Requests are batched by `DynamicBatcher`; the model itself is whatever callable
the caller hands in, so this file holds no model logic.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..data.images import pil_to_tensor
from ..errors import UserError
from ..ops.rle import encode_masks
from ..structures import Instances
from ..tiling import check_tile_args, predict_tiled
from .batching import DynamicBatcher, QueueFull
from .export_route import add_export_route
from .limits import BodySizeLimit
from .schema import Health, Prediction, PredictedInstance
from .shutdown import Shutdown, ShuttingDown

STATIC = Path(__file__).parent / "static"
logger = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """What the server needs of a model. predict: list of (3, H, W) tensors -> list of Instances
    on the CPU; the model already drops detections scoring below `min_score_thresh`."""

    name: str
    class_names: tuple
    predict: Callable[[list], list]
    backend: str = "torch"
    precision: str = "fp32"
    min_score_thresh: float = 0.0


@dataclass
class ServeOptions:
    """How the server batches and answers (`maskrcnn serve`'s options): `max_batch` images per model
    call, the first waiting `batch_timeout_ms` milliseconds for more; `max_queue` images waiting
    at most (more get 503 with Retry-After); request bodies over `max_body_mb` MiB get 413;
    `score_thresh` (0..1) and `tile` / `tile_overlap` (pixels; tile None: whole images) for
    requests that name none; `shutdown_grace` seconds for requests in flight after SIGTERM."""

    max_batch: int = 4
    batch_timeout_ms: float = 10.0
    max_queue: int = 32
    max_body_mb: float = 20.0
    score_thresh: float = 0.5  # per request default
    tile: int | None = None  # per request default
    tile_overlap: int = 64
    shutdown_grace: float = 10.0  # seconds requests in flight get after SIGTERM (shutdown.py)


def create_app(model: ServedModel, options: ServeOptions | None = None) -> FastAPI:
    """The FastAPI app serving `model`: GET / (the web page), GET /health, POST /v1/predict, POST
    /v1/export; requests batched by a `DynamicBatcher` started with the app, the request body
    limited, a SIGTERM drained as `options.shutdown_grace` says (default `ServeOptions()`). A
    `UserError` raised by a request becomes 400 with its message, anything else 500."""
    options = options or ServeOptions()
    batcher = DynamicBatcher(lambda jobs: _run_jobs(model.predict, jobs), options.max_batch,
                             options.batch_timeout_ms, options.max_queue)
    started = time.monotonic()
    shutdown = Shutdown(options.shutdown_grace)

    @asynccontextmanager
    async def lifespan(app):
        shutdown.bind(asyncio.get_running_loop())
        batcher.start()
        yield
        # every request has its answer; a model call still running is not waited for
        await run_in_threadpool(batcher.stop, 0.0 if shutdown.draining else None)

    app = FastAPI(title="maskrcnn", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.shutdown = shutdown
    app.add_middleware(BodySizeLimit, max_bytes=int(options.max_body_mb * 2**20))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/health", response_model=Health)
    async def health():
        """The model served (name, classes without the background, backend, precision), the server's
        uptime (seconds), its score thresholds (0..1) and batch size, and how many images wait in the
        queue now."""
        return Health(model=model.name, classes=list(model.class_names[1:]), backend=model.backend,
                      precision=model.precision, uptime_s=time.monotonic() - started,
                      min_score_thresh=model.min_score_thresh,
                      score_thresh=options.score_thresh, max_batch=options.max_batch,
                      queue=batcher.waiting, max_queue=options.max_queue)

    @app.post("/v1/predict", response_model=Prediction, response_model_exclude_none=True)
    async def predict(request: Request, score_thresh: float | None = None, tile: int | None = None,
                      tile_overlap: int | None = None):
        """Detect instances in one image: the multipart file field `image`, or the encoded image (PNG,
        JPEG, ...) as the body. `score_thresh` (0..1; default: the server's; never below the model's
        floor) keeps detections scoring at least that; `tile` and `tile_overlap` (pixels) run on
        overlapping tiles at full resolution. Boxes and masks are in the image's pixels, masks as COCO
        RLE. 400: no image, an image that does not decode, a threshold outside 0..1, bad tile sizes;
        413: body too large; 503 with Retry-After: the queue is full or the server is shutting down."""
        start = time.perf_counter()
        score_thresh = options.score_thresh if score_thresh is None else score_thresh
        if not 0.0 <= score_thresh <= 1.0:
            raise HTTPException(400, f"score_thresh {score_thresh}: must be between 0 and 1")
        tiling = _tiling(options, tile, tile_overlap)
        image = await run_in_threadpool(decode_image, await _image_bytes(request))
        try:
            future = batcher.submit((image, tiling))
        except QueueFull as exc:
            return JSONResponse({"detail": "server busy: the request queue is full"}, status_code=503,
                                headers={"Retry-After": str(exc.retry_after)})
        try:
            instances, inference_ms = await shutdown.result(future)
        except ShuttingDown:
            return _shutting_down(f"the server is shutting down and the request did not finish "
                                  f"within the {shutdown.grace:g} s grace period")
        applied = max(score_thresh, model.min_score_thresh)
        kept = instances[instances.scores >= applied]
        return await run_in_threadpool(_prediction, kept, model, applied, inference_ms, start)

    add_export_route(app, model.class_names)

    @app.exception_handler(UserError)
    async def user_error(request, exc: UserError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request, exc: Exception):
        logger.exception("request failed")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    return app


def _shutting_down(why: str) -> JSONResponse:
    return JSONResponse({"detail": why}, status_code=503, headers={"Retry-After": "5", "Connection": "close"})


def decode_image(data: bytes) -> torch.Tensor:
    """Encoded image bytes -> (3, H, W) float RGB in [0, 1]; anything Pillow cannot read -> 400."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return pil_to_tensor(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise HTTPException(400, "cannot decode image: not a format Pillow reads (PNG, JPEG, ...)") from None
    except Exception as exc:  # truncated data, decompression bombs, ...: Pillow's many types
        raise HTTPException(400, f"cannot decode image: {type(exc).__name__}: {exc}") from None


async def _image_bytes(request: Request) -> bytes:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        field = form.get("image")
        if not isinstance(field, UploadFile):
            raise HTTPException(400, "multipart request without a file field 'image'")
        data = await field.read()
    else:
        data = await request.body()
    if not data:
        raise HTTPException(400, "no image: send it as the multipart file field 'image' or as the body")
    return data


def _tiling(options: ServeOptions, tile: int | None, overlap: int | None):
    tile = options.tile if tile is None else tile
    if not tile:
        return None
    overlap = options.tile_overlap if overlap is None else overlap
    check_tile_args(tile, overlap)  # UserError -> 400
    return tile, overlap


def _run_jobs(predict, jobs: list) -> list:
    """Batcher work: whole images in one model call, tiled ones tile batch by tile batch.
    -> per job (Instances, milliseconds of model time shared by the batch)."""
    start = time.perf_counter()
    plain = [i for i, (_, tiling) in enumerate(jobs) if tiling is None]
    results: dict[int, Instances] = dict(zip(plain, predict([jobs[i][0] for i in plain]) if plain else []))
    for i, (image, tiling) in enumerate(jobs):
        if tiling is not None:
            results[i] = predict_tiled(predict, image, *tiling)
    milliseconds = (time.perf_counter() - start) * 1000
    return [(results[i], milliseconds) for i in range(len(jobs))]


def _prediction(instances: Instances, model: ServedModel, score_thresh: float, inference_ms: float,
                start: float) -> Prediction:
    height, width = instances.image_size
    names = instances.label_names if len(instances) else []
    rles = encode_masks(instances.masks) if instances.has("masks") else [None] * len(instances)
    mask_scores = instances.mask_scores.tolist() if instances.has("mask_scores") else [None] * len(instances)
    keypoints = instances.keypoints.tolist() if instances.has("keypoints") else [None] * len(instances)
    items = [
        PredictedInstance(label=label, label_name=name, score=score, mask_score=mask_score, box=box,
                          mask=rle, keypoints=points)
        for label, name, score, mask_score, box, rle, points in zip(
            instances.labels.tolist(), names, instances.scores.tolist(), mask_scores,
            instances.boxes.tolist(), rles, keypoints)
    ]
    return Prediction(model=model.name, width=width, height=height, score_thresh=score_thresh,
                      instances=items, inference_ms=inference_ms,
                      time_ms=(time.perf_counter() - start) * 1000)
