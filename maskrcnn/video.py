"""Video in, annotated video and one JSON line per frame out. FFmpeg (through PyAV) reads and
writes the frames; each frame goes through the model like an image."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .errors import ImageError, UserError
from .fileio import atomic_write
from .tracking import write_track_summary

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
CODECS = ("libx264", "mpeg4")  # H.264 where this FFmpeg has it, MPEG-4 part 2 otherwise


def is_video(path) -> bool:
    """Whether `path` has a video file suffix (`VIDEO_SUFFIXES`, any case); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def annotate_video(predict, source, out_dir, category_ids=(), tracker=None) -> tuple[int, int]:
    """Run `predict` ((3, H, W) tensor -> Instances) on every frame of `source`.

    Writes `out_dir/<stem>.mp4` (the frames with masks, boxes and labels drawn, same frame
    count and rate) and `out_dir/<stem>.jsonl`: per frame {"frame", "time", "results"} where
    results are COCO-style detections with `image_id` = the frame index. With a `tracker`
    (maskrcnn.tracking.Tracker) each result has a `track_id` (low-scoring detections are kept
    only where they continue a track), each id is drawn in its own colour, and
    `out_dir/<stem>_tracks.csv` sums up every track. The files appear whole or not at all. Returns (frames, instances).
    """
    av = _import_av()
    source, out_dir = Path(source), Path(out_dir)
    container = _open(av, source)
    counts = {}

    def write_video(video):
        def write_lines(lines):
            counts["done"] = _annotate(av, container, source.name, predict, category_ids, video, lines, tracker)

        atomic_write(out_dir / f"{source.stem}.jsonl", write_lines)

    try:
        atomic_write(out_dir / f"{source.stem}.mp4", write_video)
    except av.error.FFmpegError as exc:  # a corrupt frame part-way through
        raise ImageError(f"{source}: cannot decode the video ({exc})") from exc
    finally:
        container.close()
    if tracker is not None:
        write_track_summary(tracker.summaries(), out_dir / f"{source.stem}_tracks.csv")
    return counts["done"]


def _annotate(av, container, name: str, predict, category_ids, video, lines, tracker) -> tuple[int, int]:
    """Frames of `container` -> drawn frames into the binary file `video`, JSON lines into `lines`."""
    from .evaluation.evaluator import instances_to_results
    from .visualize import draw_instances, track_colours

    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    writer, found = None, 0
    for index, frame in enumerate(tqdm(container.decode(stream), total=stream.frames or None, desc=name,
                                       unit="frame")):
        rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        instances = predict(image)
        colours = None
        if tracker is not None:
            ids = tracker.update(instances, index)
            instances, ids = instances[ids >= 0], ids[ids >= 0]  # low scores only where they continue a track
            colours = track_colours(ids)
        results = instances_to_results(instances, index, category_ids)
        if tracker is not None:
            for result, track_id in zip(results, ids.tolist()):
                result["track_id"] = track_id
        record = {"frame": index, "time": None if frame.time is None else float(frame.time), "results": results}
        lines.write((json.dumps(record) + "\n").encode())
        found += len(instances)
        writer = writer or _VideoWriter(av, video, rate, rgb.shape[1], rgb.shape[0])
        writer.write(np.asarray(draw_instances(image, instances, colours=colours)))
    if writer is None:
        raise ImageError(f"{name}: the video has no frames")
    writer.close()
    return writer.frames, found


class _VideoWriter:
    """RGB frames -> an .mp4 at a fixed rate (sizes rounded up to even, as yuv420p needs)."""

    def __init__(self, av, file, rate: Fraction, width: int, height: int):
        self.container = av.open(file, mode="w", format="mp4")
        codec = next(c for c in CODECS if c in av.codecs_available)
        options = {"crf": "18"} if codec == "libx264" else {}  # thin lines and label text stay legible
        self.stream = self.container.add_stream(codec, rate=rate, options=options)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = 1 / Fraction(rate)
        self.frames = 0
        self.av = av

    def write(self, rgb: np.ndarray) -> None:
        pad = ((0, self.stream.height - rgb.shape[0]), (0, self.stream.width - rgb.shape[1]), (0, 0))
        frame = self.av.VideoFrame.from_ndarray(np.pad(rgb, pad, mode="edge"), format="rgb24")
        frame.pts = self.frames
        self.frames += 1
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))  # flush the encoder's delayed frames
        self.container.close()


def _import_av():
    try:
        import av
    except ImportError:
        raise UserError("video needs PyAV: pip install 'maskrcnn[video]'") from None
    return av


def _open(av, source: Path):
    if not source.is_file():
        raise ImageError(f"{source}: video file not found")
    try:
        container = av.open(str(source))
    except av.error.FFmpegError as exc:
        raise ImageError(f"{source}: cannot open video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise ImageError(f"{source}: no video stream")
    return container

