"""The measurements of benchmarks/scaling.py: one child process per stage and size.

`measure_<stage>(sizes, work)` -> a dict of rows; `run_child(argv)` is what a child runs. A child
is watched: its resident memory is sampled every 0.2 s (with any file it names as growing) and
it is killed above its memory limit (MEMORY_LIMIT_MB; the annotation sweep's 1M instances get
ANNOTATIONS_MEMORY_LIMIT_MB), which the row then says. Every point records the machine's load
average (1 minute) at its start, its end and the mean of the samples taken while it ran; a point
whose load moved by more than LOAD_REPEAT from the stage's first point is measured once more and
the attempt nearer that load is kept (both loads are in the row).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MEMORY_LIMIT_MB = 3500
ANNOTATIONS_MEMORY_LIMIT_MB = 9500  # reading 1M instances is the point of that sweep: measured, < 10 GB
LOAD_REPEAT = 1.5  # 1-minute load average change (on 2 cores) that repeats a point
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
# a seeded 2-class ResNet-18 FPN at 64-96 px keeping 50 proposals: a few detections with masks per
# image, so predict and serve run every step (masks, RLE, overlays) at a cost a shared 2-core CPU
# can repeat thousands of times (1000 proposals would put 13 GFLOP per image into the box head)
SMALL_MODEL = ["--model", "maskrcnn_r18_fpn", "--set", "num_classes=2", "box_detections_per_img=5",
               "input.min_size=[64]", "input.max_size=96", "model.rpn.pre_nms_topk_test=200",
               "model.rpn.post_nms_topk_test=50"]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def watched(command: list[str], grows: Path | None = None, period: float = 0.2,
            limit_mb: float = MEMORY_LIMIT_MB) -> dict:
    """Run `command` -> {"stdout", "returncode", "wall_s", "peak_rss_mb", "timeline", "load"};
    timeline rows are [seconds, RSS MB, size of `grows` in bytes] every `period`."""
    start, cpu, load_start = time.perf_counter(), _children_cpu_s(), os.getloadavg()[0]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
    timeline, loads, killed = [], [], threading.Event()

    def sample():
        while process.poll() is None:
            rss = rss_mb(process.pid)
            size = max((p.stat().st_size for p in _existing(grows)), default=0) if grows else 0
            timeline.append([round(time.perf_counter() - start, 2), round(rss, 1), size])
            loads.append(os.getloadavg()[0])
            if rss > limit_mb:
                killed.set()
                process.send_signal(signal.SIGKILL)
            time.sleep(period)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.join()
    peak = max([row[1] for row in timeline], default=0.0)
    row = {"stdout": stdout, "returncode": process.returncode, "wall_s": time.perf_counter() - start,
           "cpu_s": _children_cpu_s() - cpu,
           "peak_rss_mb": round(peak, 1), "timeline": timeline, "over_memory_limit": killed.is_set(),
           "load": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2),
                    "mean": round(float(np.mean(loads)) if loads else load_start, 2)}}
    if process.returncode and not killed.is_set():
        raise RuntimeError(f"{' '.join(command[:6])} ... failed:\n{stderr[-3000:]}")
    return row


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (one runs at a time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _existing(path: Path):
    """The file and its `.partial` sibling (JsonListWriter streams into the latter)."""
    return [p for p in (path, path.with_name(path.name + ".partial")) if p.is_file()]


def child(*argv, limit_mb: float = MEMORY_LIMIT_MB) -> dict:
    """Run `scaling.py --child argv...` watched; its JSON line merged with the watcher's numbers."""
    row = watched([sys.executable, str(HERE / "scaling.py"), "--child", *map(str, argv)], limit_mb=limit_mb)
    if row["over_memory_limit"]:
        return {"over_memory_limit": True, "limit_mb": limit_mb, "peak_rss_mb": row["peak_rss_mb"],
                "load": row["load"]}
    return {**json.loads(row["stdout"].strip().splitlines()[-1]), "peak_rss_mb": row["peak_rss_mb"],
            "load": row["load"]}


def steady(measure, reference: list) -> dict:
    """measure() -> a row with "load"; measured again when its mean load is more than LOAD_REPEAT
    from `reference[0]` (the stage's first point, set by the first call), keeping the attempt
    nearer that load; the row lists every attempt's load under "load_attempts"."""
    row = measure()
    attempts = [row]
    if reference and abs(row["load"]["mean"] - reference[0]) > LOAD_REPEAT:
        attempts.append(measure())
        row = min(attempts, key=lambda r: abs(r["load"]["mean"] - reference[0]))
    if not reference:
        reference.append(row["load"]["mean"])
    return {**row, "load_attempts": [a["load"] for a in attempts]}


# ----- children: each returns a JSON-able dict, timing only its stage ----------------------------

def run_child(argv: list[str]) -> dict:
    kind, *rest = argv
    return CHILDREN[kind](*rest)


def _child_rss() -> float:
    return round(rss_mb(os.getpid()), 1)


def _cpu_s() -> float:
    """CPU seconds of this process, all threads: what a stage costs, whatever else the machine runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(function, *args) -> tuple[dict, object]:
    """({"seconds", "cpu_s", "rss_before_mb"}, function(*args))."""
    before, start, cpu = _child_rss(), time.perf_counter(), _cpu_s()
    value = function(*args)
    return {"seconds": time.perf_counter() - start, "cpu_s": _cpu_s() - cpu, "rss_before_mb": before}, value


def _gen_gt(instances, path):
    import scaling_data

    Path(path).write_text(json.dumps(scaling_data.ground_truth(int(instances))))
    return {}


def _gen_dets(gt_path, path):
    import scaling_data

    detections = scaling_data.detections(json.loads(Path(gt_path).read_text()))
    Path(path).write_text(json.dumps(detections))
    return {"detections": len(detections)}


def _load_gt(gt_path):
    from maskrcnn.evaluation.evaluator import load_ground_truth

    row, gt = _timed(load_ground_truth, gt_path)
    return {**row, "images": len(gt.imgs), "instances": len(gt.anns)}


def _dataset(gt_path):
    from maskrcnn.data.coco import CocoDataset

    row, dataset = _timed(lambda: CocoDataset(gt_path, check_files=False))
    return {**row, "images": len(dataset)}


def _eval(engine, gt_path, dets_path, out_dir):
    import eval_engines

    row, stats = _timed(eval_engines.ENGINES[engine], gt_path, dets_path, out_dir)
    return {**row, "stats": stats}


def _loading(data_dir, workers):
    """The first epoch through the training loader alone: seconds to the first batch (worker
    start-up included) and images/s over the rest."""
    loader = _train_loader(data_dir, int(workers))
    start = time.perf_counter()
    next(loader)
    first = time.perf_counter() - start
    batches = len(loader_dataset(data_dir)) // 2
    for _ in range(batches - 1):
        next(loader)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "first_batch_s": first, "images_per_s": 2 * batches / seconds,
            "after_first_images_per_s": 2 * (batches - 1) / (seconds - first)}


@functools.lru_cache(maxsize=None)
def loader_dataset(data_dir):
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.transforms import RandomHorizontalFlip

    dataset = CocoDataset(Path(data_dir) / "annotations.json", Path(data_dir) / "images")
    dataset.transforms = RandomHorizontalFlip(0.5, ())
    return dataset


def _train_loader(data_dir, workers: int):
    from maskrcnn.data.loader import build_train_loader

    return iter(build_train_loader(loader_dataset(data_dir), 2, 0, num_workers=workers))


def _train_loop(data_dir, workers, steps):
    """Training steps (2 torch threads) fed by the loader with `workers` workers: end-to-end
    images/s after a warm-up step, and the share of the time spent waiting for batches."""
    import torch

    torch.set_num_threads(2)
    model, optimizer = _small_trainer(data_dir)
    loader = _train_loader(data_dir, int(workers))
    waited, start = 0.0, None
    for step in range(int(steps) + 1):  # step 0 warms up (and starts the workers)
        fetch = time.perf_counter()
        images, targets = next(loader)
        if step == 0:
            _step(model, optimizer, images, targets)
            start = time.perf_counter()
            continue
        waited += time.perf_counter() - fetch
        _step(model, optimizer, images, targets)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images_per_s": 2 * int(steps) / seconds, "waiting_share": waited / seconds}


def _small_trainer(data_dir):
    import torch

    from maskrcnn.model.detector import build_model
    from maskrcnn.presets import get_preset

    dataset = loader_dataset(data_dir)
    cfg = get_preset("maskrcnn_r18_fpn")
    cfg.model.num_classes = len(dataset.class_names)
    cfg.input.min_size, cfg.input.max_size = (dataset[0][0].shape[1],), dataset[0][0].shape[2]
    model = build_model(cfg).train()
    return model, torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)


def _step(model, optimizer, images, targets) -> None:
    losses = model(list(images), list(targets))
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()


def _train_step(data_dir, steps):
    """The model's training step alone (2 torch threads, the same two images every step)."""
    import torch

    torch.set_num_threads(2)
    model, optimizer = _small_trainer(data_dir)
    dataset = loader_dataset(data_dir)
    batch = [dataset[0], dataset[1]]
    times = []
    for _ in range(int(steps) + 1):  # the first step warms up
        start = time.perf_counter()
        _step(model, optimizer, [image for image, _ in batch], [target for _, target in batch])
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times[1:]))
    return {"seconds_per_step": seconds, "images_per_s": 2 / seconds}


CHILDREN = {"gen-gt": _gen_gt, "gen-dets": _gen_dets, "load-gt": _load_gt, "dataset": _dataset,
            "eval": _eval, "loading": _loading, "train-step": _train_step, "train-loop": _train_loop}


# ----- stages ------------------------------------------------------------------------------------

def _ground_truth_file(work: Path, instances: int) -> Path:
    path = work / f"gt_{instances}.json"
    if not path.is_file():
        child("gen-gt", instances, path, limit_mb=ANNOTATIONS_MEMORY_LIMIT_MB)
    return path


def measure_annotations(sizes: dict, work: Path, save_rows=lambda partial: None) -> dict:
    rows, reference = [], {"load_gt": [], "dataset": []}
    for instances in sizes["annotations"]:
        path = _ground_truth_file(work, instances)
        row = {"instances": instances, "file_mb": round(path.stat().st_size / 2**20, 1)}
        for name, kind in (("load_gt", "load-gt"), ("dataset", "dataset")):
            measure = functools.partial(child, kind, path, limit_mb=ANNOTATIONS_MEMORY_LIMIT_MB)
            result = steady(measure, reference[name])
            row[name] = result
            print(f"  {instances} instances {name}: {_fmt(result)}", flush=True)
        rows.append(row)
        save_rows({"rows": rows})
    return {"rows": rows}


def measure_eval(sizes: dict, work: Path, save_rows=lambda partial: None) -> dict:
    rows = []
    for images in sizes["eval"]:
        gt_path = _ground_truth_file(work, round(images * 7.3))
        dets_path = work / f"dets_{gt_path.stem}.json"
        if not dets_path.is_file():
            child("gen-dets", gt_path, dets_path)
        row = {"images": images, "detections": 100 * images}
        engines = ["ours", "faster_coco_eval"] + ["pycocotools"] * (images <= sizes["pycocotools_max"])
        for engine in engines:
            row[engine] = child("eval", engine, gt_path, dets_path, work / "eval_out")
            print(f"  {images} images {engine}: {_fmt(row[engine])}", flush=True)
        reference = row.get("pycocotools")
        for engine in engines:
            if reference and "stats" in row[engine]:
                row[engine]["max_diff_vs_pycocotools"] = max(
                    abs(row[engine]["stats"][k] - v) for k, v in reference["stats"].items())
        rows.append(row)
        save_rows({"rows": rows})
    return {"rows": rows}


def measure_predict(sizes: dict, work: Path, save_rows=lambda partial: None) -> dict:
    rows, reference = [], []
    for count in sizes["predict"]:
        folder = _small_images(work, count)
        out = work / f"predict_out_{count}"
        command = [sys.executable, "-m", "maskrcnn", "predict", *SMALL_MODEL, "--out", str(out),
                   "--score-thresh", "0.3", str(folder)]
        measure = functools.partial(watched, command, grows=out / "results.json", period=1.0)
        result = steady(measure, reference)
        rows.append({"images": count, "seconds": result["wall_s"], "cpu_s": result["cpu_s"],
                     "peak_rss_mb": result["peak_rss_mb"],
                     "results_mb": round((out / "results.json").stat().st_size / 2**20, 2),
                     "load": result["load"], "load_attempts": result["load_attempts"],
                     "timeline": _thin(result["timeline"], 60)})
        print(f"  {count} images: {result['wall_s']:.0f} s, peak RSS {result['peak_rss_mb']} MB", flush=True)
        save_rows({"rows": rows, "command": _predict_command()})
    return {"rows": rows, "command": _predict_command()}


def _predict_command() -> str:
    return "maskrcnn predict " + " ".join(SMALL_MODEL)


def _small_images(work: Path, count: int) -> Path:
    """`count` 64 x 48 PNGs of random rectangles (reused across sizes: the first N of the largest)."""
    from PIL import Image

    folder = work / f"images_{count}"
    if folder.is_dir() and len(list(folder.iterdir())) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = np.full((48, 64, 3), rng.integers(0, 255, 3), np.uint8)
        x, y = rng.integers(0, 40), rng.integers(0, 30)
        pixels[y:y + 16, x:x + 20] = rng.integers(0, 255, 3)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png")
    return folder


def measure_loading(sizes: dict, work: Path, save_rows=lambda partial: None) -> dict:
    """The loader alone with 0 / 2 / 4 workers (each twice, alternating), the model's step alone,
    and training steps fed by the loader with 0 / 2 / 4 workers."""
    from maskrcnn.data.synthetic import write_synthetic_dataset

    data_dir = work / f"shapes_{sizes['loading_images']}"
    if not (data_dir / "annotations.json").is_file():
        write_synthetic_dataset(data_dir, sizes["loading_images"], seed=0, size=512)
    rows = []
    for repeat in range(2):
        for workers in WORKERS:
            rows.append({"workers": workers, "repeat": repeat, **child("loading", data_dir, workers)})
            print(f"  loader, {workers} workers: {rows[-1]['images_per_s']:.1f} images/s "
                  f"(first batch {rows[-1]['first_batch_s']:.1f} s)", flush=True)
    step = child("train-step", data_dir, 3)
    print(f"  training step: {step['images_per_s']:.2f} images/s", flush=True)
    loops = []
    for workers in WORKERS:
        loops.append({"workers": workers, **child("train-loop", data_dir, workers, sizes["loop_steps"])})
        print(f"  training fed by {workers} workers: {loops[-1]['images_per_s']:.2f} images/s, "
              f"waiting {100 * loops[-1]['waiting_share']:.0f} %", flush=True)
    return {"rows": rows, "train_step": step, "train_loop": loops, "image_size": 512,
            "images": sizes["loading_images"], "cores": os.cpu_count()}


WORKERS = (0, 2, 4)


def measure_serve(sizes: dict, work: Path, save_rows=lambda partial: None) -> dict:
    import scaling_soak

    return scaling_soak.soak(sizes["soak_minutes"], sizes["rate"], SMALL_MODEL, work / "serve.log")


def _thin(rows: list, keep: int) -> list:
    step = max(1, len(rows) // keep)
    return rows[::step] + ([rows[-1]] if rows and (len(rows) - 1) % step else [])


def _fmt(result: dict) -> str:
    if result.get("over_memory_limit"):
        return f"killed above {MEMORY_LIMIT_MB} MB"
    return f"{result.get('seconds', 0):.2f} s, peak RSS {result['peak_rss_mb']} MB"
