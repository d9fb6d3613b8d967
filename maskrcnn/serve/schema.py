"""The JSON the API answers with, as pydantic models (FastAPI validates responses against them
and publishes them in /openapi.json)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Rle(BaseModel):
    """COCO compressed run-length encoding of a mask: column-major runs, starting with 0s."""

    size: list[int] = Field(min_length=2, max_length=2, description="[height, width]")
    counts: str


class PredictedInstance(BaseModel):
    """One detection: class, score (0..1), box in the image's pixels, and the mask, mask score and
    keypoints when the model predicts them."""

    label: int = Field(ge=1, description="class index, 1..K (0 is background)")
    label_name: str
    score: float = Field(ge=0, le=1)
    mask_score: float | None = Field(None, description="Mask Scoring R-CNN models only")
    box: list[float] = Field(min_length=4, max_length=4, description="x0, y0, x1, y1 in pixels")
    mask: Rle | None = Field(None, description="models with a mask head only")
    keypoints: list[list[float]] | None = Field(None, description="keypoint models: K x (x, y, score)")


class Prediction(BaseModel):
    """The answer of POST /v1/predict: the model, the image's size in pixels, the score threshold
    applied, the instances kept, and the times in milliseconds."""

    model: str
    width: int
    height: int
    score_thresh: float = Field(description="the threshold applied (the request's, or the model's floor)")
    instances: list[PredictedInstance]
    inference_ms: float = Field(description="model time of the batch this image ran in")
    time_ms: float = Field(description="time from receiving the request to the answer")


class Health(BaseModel):
    """The answer of GET /health: the model served, uptime in seconds, score thresholds (0..1), the
    batch size and the queue (images waiting now, and at most)."""

    status: str = "ok"
    model: str
    classes: list[str]
    backend: str
    precision: str
    uptime_s: float
    min_score_thresh: float = Field(description="the model drops detections scoring below this")
    score_thresh: float = Field(description="the threshold of a request that names none")
    max_batch: int
    queue: int
    max_queue: int
