"""A generated stand-in for ../shared/data, for clones that do not have it beside them.

Penn-Fudan may not be redistributed and COCO images carry per-image Flickr licences, so nothing
of either is shipped: `write_stand_in(root)` draws synthetic scenes instead, in the same layout
and with the same file names and image sizes that the tests open:

- `pennfudan/`: `PNGImages/*.png`, `PedMasks/*_mask.png` (0 = background, 1..N = instance id)
  and PASCAL-style `Annotation/*.txt` (1-based inclusive boxes), standing figures only;
- `coco/<subset>/`: `images/*.jpg` + a COCO `annotations.json`. Instance subsets have people,
  discs and boxes under non-contiguous category ids, a crowd region (uncompressed RLE) and an
  image without annotations; keypoint subsets have people with the 17 COCO keypoints (some
  labelled occluded, some people with none labelled, as in COCO);
- `dsb2018_nuclei/`: the Kaggle DSB2018 `stage1_train` layout, `<id>/images/<id>.png` (RGBA) and
  `<id>/masks/*.png` (one 0/255 PNG per instance): bright elliptic nuclei on a dark field.

A figure is a head, a torso and eight limb segments posed around a random skeleton whose joints
are the COCO keypoints, so its keypoints lie on its mask. Objects never overlap, so each mask is
exactly its polygons. Everything is a function of the seed: two runs write identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn.data.transforms import COCO_KEYPOINT_NAMES

SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
            [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
PERSON = {"id": 1, "name": "person", "supercategory": "person"}
# (id, name, supercategory, corners, aspect): non-contiguous ids as COCO's, so the id -> label
# mapping is not the identity; families of similar shapes, as COCO's supercategories
SHAPES = [(3, "disc", "round", 24, 1.0), (7, "ellipse", "round", 24, 0.6), (13, "oval", "round", 24, 1.6),
          (22, "square", "angular", 4, 1.0), (27, "diamond", "angular", 4, 1.5), (35, "triangle", "angular", 3, 1.0),
          (41, "pentagon", "angular", 5, 1.0), (44, "hexagon", "angular", 6, 1.0), (62, "bar", "long", 4, 0.25),
          (90, "plank", "long", 4, 0.4)]
INSTANCE_CATEGORIES = [PERSON, *({"id": i, "name": n, "supercategory": f} for i, n, f, _, _ in SHAPES)]
KEYPOINT_CATEGORIES = [{**PERSON, "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": SKELETON}]
LIMBS = [(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16)]  # joint pairs

# (file stem, width, height): the names and sizes of the real images the tests open
PENNFUDAN = [("FudanPed00001", 559, 536), ("FudanPed00002", 455, 414), ("FudanPed00003", 479, 445),
             ("FudanPed00004", 396, 397), ("FudanPed00005", 473, 389), ("FudanPed00006", 385, 426),
             ("FudanPed00007", 539, 381), ("FudanPed00017", 266, 342), ("FudanPed00018", 253, 323),
             ("PennPed00010", 750, 495), ("PennPed00045", 692, 395), ("PennPed00061", 314, 320)]
# subset -> [(file name, width, height, people with keypoints, people without)]; keypoint
# subsets list every image, instance subsets give (number of images, seed)
KEYPOINT_SUBSETS = {
    "keypoints-val2017-30": [("000000000101.jpg", 480, 640, 2, 1), ("000000000102.jpg", 640, 427, 1, 2),
                             ("000000465718.jpg", 640, 429, 1, 4), ("000000293625.jpg", 640, 480, 2, 0),
                             ("000000000105.jpg", 500, 375, 3, 1), ("000000000106.jpg", 427, 640, 2, 2)],
    "keypoints-train2017-30": [("000000000201.jpg", 640, 480, 2, 1), ("000000000202.jpg", 480, 640, 1, 1),
                               ("000000000203.jpg", 640, 427, 3, 0), ("000000178236.jpg", 500, 332, 1, 2),
                               ("000000188388.jpg", 640, 480, 2, 2), ("000000000206.jpg", 612, 612, 2, 1)],
}
# The fast fp32 path's 1e-3 px box tolerance (test_parity_torchvision) is tight for any image: its
# worst error is 3e-4..9e-4 px on 12 real Penn-Fudan images, and 4e-4..2e-3 on synthetic scenes.
# With this seed the four parity scenes give 5e-4..7e-4, inside the real images' range.
PENNFUDAN_SEED = 1
INSTANCE_SUBSETS = {"val2017-32": (8, 1), "train2017-6": (6, 2), "train2017-16": (6, 3)}
# dsb2018_nuclei: (width, height, nuclei) per image; ids are 64 hex digits, as the real ones
NUCLEI = [(256, 256, 30), (320, 256, 12), (256, 256, 45), (360, 360, 20), (256, 320, 8), (256, 256, 25)]


def write_stand_in(root) -> Path:
    """Write the stand-in tree under `root` (about 1 s); returns `root`."""
    root = Path(root)
    _write_pennfudan(root / "pennfudan", np.random.default_rng(PENNFUDAN_SEED))
    for index, (subset, (num_images, seed)) in enumerate(INSTANCE_SUBSETS.items()):
        sizes = [(640, 480), (640, 427), (480, 640), (500, 375), (612, 612)]
        specs = [(f"{seed:06d}{i:06d}.jpg", *sizes[i % len(sizes)]) for i in range(num_images)]
        _write_coco(root / "coco" / subset, specs, np.random.default_rng(100 + index), keypoints=False)
    for index, (subset, specs) in enumerate(KEYPOINT_SUBSETS.items()):
        _write_coco(root / "coco" / subset, specs, np.random.default_rng(200 + index), keypoints=True)
    _write_nuclei(root / "dsb2018_nuclei", np.random.default_rng(300))
    return root


def _write_nuclei(root: Path, rng) -> None:
    """NUCLEI images of DSB2018's layout: non-overlapping ellipses, one mask PNG each."""
    for index, (width, height, count) in enumerate(NUCLEI):
        image_id = f"{index:02d}" + "%062x" % rng.integers(1 << 62)
        folder = root / image_id
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        yy, xx = np.mgrid[0:height, 0:width]
        taken = np.zeros((height, width), bool)
        pixels = np.zeros((height, width), np.float64) + rng.uniform(5, 25)
        written = 0
        for _ in range(count * 5):
            if written == count:
                break
            cx, cy = rng.uniform(8, width - 8), rng.uniform(8, height - 8)
            a, b, t = rng.uniform(3, 14), rng.uniform(3, 14), rng.uniform(0, np.pi)
            u, v = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t), -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            mask = (u / a) ** 2 + (v / b) ** 2 <= 1
            if not mask.any() or (mask & taken).any():
                continue
            taken |= mask
            pixels[mask] = rng.uniform(120, 240)
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{written:04x}.png")
            written += 1
        grey = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
        rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
        Image.fromarray(rgba, "RGBA").save(folder / "images" / f"{image_id}.png")


def _figure(rng, width: int, height: int, tall: tuple[float, float]):
    """A standing figure: (polygons [flat xy lists], keypoints (17, 2)) somewhere in the image."""
    size = rng.uniform(*tall) * height
    unit = size / 8  # about a head's height
    cx, feet = rng.uniform(0.1, 0.9) * width, rng.uniform(0.75, 1.0) * height
    side = rng.choice([-1.0, 1.0])  # facing the camera or away: the person's left on either side
    head = np.array([cx + rng.normal(0, 0.1) * unit, feet - 7.4 * unit])
    points = np.zeros((17, 2))
    points[0] = head + [0.0, 0.15 * unit]
    points[1:5] = head + np.array([[0.2, -0.1], [-0.2, -0.1], [0.42, 0], [-0.42, 0]]) * [side * unit, unit]
    for left, right, dx, y in ((5, 6, 0.9, 6.5), (11, 12, 0.55, 4.0)):  # shoulders, hips
        points[left] = [cx + side * dx * unit, feet - y * unit]
        points[right] = [cx - side * dx * unit, feet - y * unit]
    for top, length, tilt, spread in ((5, 1.4, 0.3, 0.5), (6, 1.4, 0.3, 0.5), (11, 1.9, 0.1, 0.2), (12, 1.9, 0.1, 0.2)):
        outward = np.sign(points[top][0] - cx)
        for joint in (top, top + 2):  # shoulder -> elbow -> wrist, hip -> knee -> ankle (y down)
            angle = np.pi / 2 - outward * tilt + rng.normal(0, spread)
            points[joint + 2] = points[joint] + length * unit * np.array([np.cos(angle), np.sin(angle)])
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    polygons = [head + np.stack([0.45 * unit * np.cos(angles), 0.55 * unit * np.sin(angles)], 1)]
    polygons.append(np.array([points[5], points[6], points[12], points[11]]))  # torso
    for a, b in LIMBS:
        polygons.append(_segment(points[a], points[b], (0.5 if a < 11 else 0.65) * unit))
    return [p.ravel().tolist() for p in polygons], points


def _segment(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """(4, 2) corners of a bar of `width` from a to b."""
    normal = np.array([a[1] - b[1], b[0] - a[0]]) / max(np.hypot(*(b - a)), 1e-6) * width / 2
    return np.array([a + normal, b + normal, b - normal, a - normal])


def _shape(rng, width: int, height: int, corners: int, aspect: float):
    """A rotated regular polygon (24 corners: a disc) stretched by `aspect`, as one polygon."""
    radius = rng.uniform(0.03, 0.12) * min(width, height)
    centre = rng.uniform(0.1, 0.9, size=2) * [width, height]
    angles = np.linspace(0, 2 * np.pi, corners, endpoint=False)
    points = np.stack([np.cos(angles), aspect * np.sin(angles)], 1) * radius
    turn = rng.uniform(0, np.pi)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return [(centre + points @ rotation.T).ravel().tolist()]


def _rasterize(polygons: list[list[float]], width: int, height: int) -> np.ndarray:
    """(H, W) bool union of the polygons, as the COCO API draws them."""
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return mask_utils.decode(rle).astype(bool)


def _place(width, height, make, taken: np.ndarray, tries: int = 30):
    """(polygons, extra, mask) of the first `make()` -> (polygons, extra) whose mask (>= 100 px)
    overlaps nothing `taken`, or None; marks the mask taken."""
    for _ in range(tries):
        polygons, extra = make()
        mask = _rasterize(polygons, width, height)
        if mask.sum() >= 100 and not (mask & taken).any():
            taken |= mask
            return polygons, extra, mask
    return None


def _scene(rng, width, height, objects):
    """Paint the objects (polygons) over a cluttered background: (H, W, 3) uint8 with a photo's
    muted colours and detail at every scale, not flat saturated primaries."""
    image = np.zeros((height, width, 3))
    for cells, weight in ((4, 0.6), (16, 0.3), (64, 0.1)):  # coarse to fine, like 1/f
        grid = _colours(rng, (cells, cells))
        image += weight * np.asarray(Image.fromarray(grid).resize((width, height), Image.BILINEAR))
    for _ in range(int(rng.integers(5, 15))):  # unannotated clutter: walls, windows, signs
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(10, width // 3), rng.integers(10, height // 3)
        image[y:y + h, x:x + w] = 0.5 * image[y:y + h, x:x + w] + 0.5 * _colours(rng, ())
    image += rng.normal(0, 6, size=image.shape)
    for polygons in objects:
        for polygon in polygons:  # each part its own colour: head, shirt, sleeves, legs...
            part = _rasterize([polygon], width, height)
            image[part] = _colours(rng, ()) + rng.normal(0, 6, size=(int(part.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _colours(rng, shape: tuple) -> np.ndarray:
    """(*shape, 3) uint8 muted colours."""
    grey = rng.uniform(40, 215, size=(*shape, 1))
    return np.clip(grey + rng.normal(0, 20, size=(*shape, 3)), 0, 255).astype(np.uint8)


def _write_pennfudan(root: Path, rng) -> None:
    for sub in ("PNGImages", "PedMasks", "Annotation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem, width, height in PENNFUDAN:
        taken = np.zeros((height, width), bool)
        placed = [_place(width, height, lambda: _figure(rng, width, height, (0.5, 0.85)), taken)
                  for _ in range(int(rng.integers(1, 4)))]
        placed = [p for p in placed if p is not None]
        pixels = _scene(rng, width, height, [polygons for polygons, _, _ in placed])
        Image.fromarray(pixels).save(root / "PNGImages" / f"{stem}.png")
        ids = np.zeros((height, width), np.uint8)
        for index, (_, _, mask) in enumerate(placed, start=1):
            ids[mask] = index
        Image.fromarray(ids).save(root / "PedMasks" / f"{stem}_mask.png")
        masks = [mask for _, _, mask in placed]
        (root / "Annotation" / f"{stem}.txt").write_text(_pascal(stem, width, height, masks))


def _pascal(stem: str, width: int, height: int, masks) -> str:
    """A Penn-Fudan annotation file: size, object count and 1-based inclusive boxes."""
    name = '"PASpersonWalking"'
    lines = ['# Compatible with PASCAL Annotation Version 1.00',
             f'Image filename : "PennFudanPed/PNGImages/{stem}.png"',
             f"Image size (X x Y x C) : {width} x {height} x 3",
             f"Objects with ground truth : {len(masks)} {{ {' '.join([name] * len(masks))} }}"]
    for index, mask in enumerate(masks, start=1):
        ys, xs = np.nonzero(mask)
        lines.append(f"Bounding box for object {index} {name} (Xmin, Ymin) - (Xmax, Ymax) : "
                     f"({xs.min() + 1}, {ys.min() + 1}) - ({xs.max() + 1}, {ys.max() + 1})")
    return "\n".join(lines) + "\n"


def _write_coco(folder: Path, specs, rng, keypoints: bool) -> None:
    """`folder/images/*.jpg` + `folder/annotations.json` for images `specs` (name, w, h[, n, m])."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, (file_name, width, height, *people) in enumerate(specs):
        image_id = 1000 + index
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        if keypoints:
            objects = _people(rng, width, height, *people)
        elif index == 1:
            objects = []  # an image without annotations stays in a dataset
        else:
            objects = _things(rng, width, height, first=7 * index)
        pixels = _scene(rng, width, height, [o["polygons"] for o in objects])
        Image.fromarray(pixels).save(folder / "images" / file_name, quality=92)
        for obj in objects:
            annotations.append(_annotation(obj, len(annotations) + 1, image_id, width, height))
    if not keypoints:  # one crowd region, as uncompressed RLE like COCO's
        annotations.append(_crowd(rng, images[0], len(annotations) + 1))
    categories = KEYPOINT_CATEGORIES if keypoints else INSTANCE_CATEGORIES
    data = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(data))


def _people(rng, width, height, labelled: int, unlabelled: int) -> list[dict]:
    taken, objects = np.zeros((height, width), bool), []
    for count, has_keypoints in ((labelled, True), (unlabelled, False)):
        tall = (0.4, 0.9) if has_keypoints else (0.15, 0.4)  # COCO leaves small people unlabelled
        for _ in range(count):
            found = _place(width, height, lambda: _figure(rng, width, height, tall), taken)
            if found is not None:
                polygons, points, mask = found
                obj = {"polygons": polygons, "category_id": 1, "mask": mask}
                obj["keypoints"] = _visibility(rng, points, mask) if has_keypoints else np.zeros((17, 3))
                objects.append(obj)
    return objects


def _visibility(rng, points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(17, 3) COCO keypoints: in the image labelled visible (2) or, one in ten, occluded (1);
    outside it not labelled (0, 0, 0)."""
    height, width = mask.shape
    xy = np.floor(points).astype(int)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    v = np.where(inside, np.where(rng.random(17) < 0.1, 1, 2), 0)
    return np.concatenate([np.where(inside[:, None], xy, 0), v[:, None]], axis=1)


def _things(rng, width, height, first: int) -> list[dict]:
    """8-16 non-overlapping people and shapes, their categories in turn from `first` on, so a few
    images hold every category."""
    taken, objects = np.zeros((height, width), bool), []
    for index in range(int(rng.integers(8, 17))):
        category = INSTANCE_CATEGORIES[(first + index) % len(INSTANCE_CATEGORIES)]
        found = _place(width, height, _maker(rng, width, height, category), taken)
        if found is not None:
            objects.append({"polygons": found[0], "category_id": category["id"], "mask": found[2]})
    return objects


def _maker(rng, width, height, category: dict):
    """() -> (polygons, None) of one random object of `category`."""
    if category is PERSON:
        return lambda: _figure(rng, width, height, (0.15, 0.5))
    corners, aspect = next((c, a) for i, _, _, c, a in SHAPES if i == category["id"])
    return lambda: (_shape(rng, width, height, corners, aspect), None)


def _annotation(obj: dict, ann_id: int, image_id: int, width: int, height: int) -> dict:
    ys, xs = np.nonzero(obj["mask"])
    ann = {"id": ann_id, "image_id": image_id, "category_id": obj["category_id"], "iscrowd": 0,
           "segmentation": obj["polygons"], "area": float(obj["mask"].sum()),
           "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]}
    if "keypoints" in obj:
        ann["keypoints"] = [int(v) for v in obj["keypoints"].ravel()]
        ann["num_keypoints"] = int((obj["keypoints"][:, 2] > 0).sum())
    return ann


def _crowd(rng, image: dict, ann_id: int) -> dict:
    """A crowd of small discs in the image's top band, as one uncompressed-RLE annotation."""
    width, height = image["width"], image["height"]
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    discs = [(rng.uniform([10, 10], [width - 10, height / 4]) + rng.uniform(4, 9) *
              np.stack([np.cos(angles), np.sin(angles)], 1)).ravel().tolist() for _ in range(6)]
    mask = _rasterize(discs, width, height)
    flat = mask.T.ravel()  # column-major, as COCO counts run
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]]))
    counts = ([0] if flat[0] else []) + runs.tolist()  # runs start with background
    ys, xs = np.nonzero(mask)
    return {"id": ann_id, "image_id": image["id"], "category_id": 1, "iscrowd": 1,
            "segmentation": {"counts": counts, "size": [height, width]}, "area": float(mask.sum()),
            "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                     float(ys.max() - ys.min() + 1)]}
