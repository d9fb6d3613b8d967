"""The web page in a real browser: headless Chromium (Debian's chromium + chromium-driver, which
.ci/run installs) driven by selenium against a real uvicorn server with a tiny seeded model.
Pixels are checked on screenshots (device pixel ratio 1). Set MASKRCNN_PAGE_SCREENS=folder to
keep the 1280x800 and phone-width screenshots."""

import io
import json
import os
import shutil
import socket
import threading
import time
import zipfile

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from pycocotools import mask as mask_utils
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from maskrcnn.serve.app import ServedModel, ServeOptions, create_app

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--force-device-scale-factor=1", "--window-size=1280,800")
VIEWER_BACKGROUND = (0xE8, 0xE8, 0xE8)  # style.css #viewer


@pytest.fixture(scope="module")
def server(model):
    """uvicorn on a free port in a thread; yields the base URL."""
    served = ServedModel("tiny_r18", model.cfg.model.class_names,
                         lambda images: [i.to("cpu") for i in model.predict(images)])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(served, ServeOptions(score_thresh=0.0)), host="127.0.0.1", port=port,
                            log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install chromium and chromium-driver (apt), as .ci/run does"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def no_console_errors(browser):
    browser.set_window_size(1280, 800)
    browser.get_log("browser")  # drop what earlier tests left
    yield
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def _save(images: dict, folder) -> list:
    """{name: (H, W, 3) uint8} as PNGs in folder -> their paths."""
    folder.mkdir(exist_ok=True)
    paths = []
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths


def _open(browser, server, paths) -> dict:
    """Loads the page, picks the files, waits for every answer and the first drawing."""
    browser.get(server)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda b: b.find_element(By.ID, "model").text.startswith("tiny_r18"))
    browser.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in paths))
    wait.until(lambda b: b.execute_script("return window.maskrcnnPage.done && window.maskrcnnPage.drawn"))
    return browser.execute_script("return window.maskrcnnPage.entries[0].answer")


def _view(browser) -> dict:
    """Where the image is drawn: the viewer's box and the image's rectangle, in window pixels."""
    return browser.execute_script(
        "const v = window.maskrcnnPage.viewer, r = v.box();"
        "return {left: r.left, top: r.top, width: r.width, height: r.height, scale: v.scale,"
        "        x: r.left + v.tx, y: r.top + v.ty, w: v.width * v.scale, h: v.height * v.scale};")


def _screenshot(browser, keep_as=None) -> np.ndarray:
    png = browser.get_screenshot_as_png()
    folder = os.environ.get("MASKRCNN_PAGE_SCREENS")
    if keep_as and folder:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, keep_as), "wb") as out:
            out.write(png)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _set_slider(browser, element_id, key):
    browser.find_element(By.ID, element_id).send_keys(key)  # keyboard, as a user without a mouse


def _masks(answer) -> np.ndarray:
    return np.stack([mask_utils.decode({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode()})
                     for d in answer["instances"]]).astype(bool)


@pytest.mark.parametrize("side", [128, 3000])
def test_image_fits_the_window_and_masks_stay_crisp(server, browser, tmp_path, side):
    colour = (30, 160, 90)
    path, = _save({f"flat{side}.png": np.full((side, side, 3), colour, np.uint8)}, tmp_path)
    answer = _open(browser, server, [path])
    view = _view(browser)
    # inside the viewer, touching it on the two sides of the tighter dimension
    assert view["x"] >= view["left"] - 0.5 and view["y"] >= view["top"] - 0.5
    assert view["x"] + view["w"] <= view["left"] + view["width"] + 0.5
    assert view["y"] + view["h"] <= view["top"] + view["height"] + 0.5
    assert max(view["w"] / view["width"], view["h"] / view["height"]) == pytest.approx(1, abs=1e-3)
    assert view["h"] > 400  # 1280x800: the image is large, whatever its own size

    _set_slider(browser, "opacity", Keys.HOME)  # masks off: the image itself
    shot = _screenshot(browser)
    centre = shot[int(view["y"] + view["h"] / 2), int(view["x"] + view["w"] / 2)]
    assert np.abs(centre - colour).max() <= 2
    beside = shot[int(view["y"] + view["h"] / 2), int(view["left"] + (view["x"] - view["left"]) / 2)]
    assert np.abs(beside - VIEWER_BACKGROUND).max() <= 2

    # opaque masks: only the image's colour and whole mask colours, no smoothed edges
    _set_slider(browser, "opacity", Keys.END)
    shot = _screenshot(browser)
    inside = shot[int(view["y"]) + 2:int(view["y"] + view["h"]) - 2, int(view["x"]) + 2:int(view["x"] + view["w"]) - 2]
    colours = {tuple(c) for c in inside.reshape(-1, 3)}
    expected = {colour} | {tuple(browser.execute_script("return colour(arguments[0])", i))
                           for i in range(len(answer["instances"]))}
    assert len(answer["instances"]) > 0 and colours <= expected

    # zoom by keyboard about the centre, back to fit with 0
    viewer = browser.find_element(By.ID, "viewer")
    viewer.send_keys("+")
    assert _view(browser)["scale"] == pytest.approx(view["scale"] * 1.25)
    viewer.send_keys("0")
    assert _view(browser)["scale"] == pytest.approx(view["scale"])


def test_selecting_an_instance_highlights_it(server, browser, tmp_path):
    grey = 128
    path, = _save({"grey.png": np.full((120, 160, 3), grey, np.uint8)}, tmp_path)
    answer = _open(browser, server, [path])
    masks = _masks(answer)
    # the instance with most pixels no other mask covers
    alone = masks & (masks.sum(0) == 1)
    target = int(np.argmax(alone.reshape(len(masks), -1).sum(1)))
    assert alone[target].sum() > 20
    view = _view(browser)
    ys, xs = np.nonzero(alone[target])
    pick = np.linspace(0, len(ys) - 1, min(40, len(ys))).astype(int)
    sy = (view["y"] + (ys[pick] + 0.5) * view["scale"]).astype(int)
    sx = (view["x"] + (xs[pick] + 0.5) * view["scale"]).astype(int)
    rgb = np.array(browser.execute_script("return colour(arguments[0])", target))
    before = _screenshot(browser)
    assert np.abs(before[sy, sx] - (0.5 * grey + 0.5 * rgb)).max() <= 3  # opacity 0.5

    browser.find_element(By.CSS_SELECTOR, f'#instances button[data-index="{target}"]').click()
    after = _screenshot(browser, keep_as="page_1280x800_selected.png")
    assert np.abs(after[sy, sx] - (0.15 * grey + 0.85 * rgb)).max() <= 3
    for other in [i for i in range(len(masks)) if i != target and alone[i].sum()]:
        y, x = np.argwhere(alone[other])[len(np.argwhere(alone[other])) // 2]  # dimmed to 0.35
        point = int(view["y"] + (y + 0.5) * view["scale"]), int(view["x"] + (x + 0.5) * view["scale"])
        assert np.abs(after[point] - grey).sum() < np.abs(before[point] - grey).sum()

    # the list is keyboard operable: arrows move the selection, Escape clears it
    selected = browser.find_element(By.CSS_SELECTOR, 'button[aria-selected="true"]')
    assert int(selected.get_attribute("data-index")) == target
    buttons = browser.find_elements(By.CSS_SELECTOR, "#instances button")
    buttons[0].send_keys(Keys.ARROW_DOWN)
    assert browser.execute_script("return window.maskrcnnPage.selected") == int(buttons[1].get_attribute("data-index"))
    buttons[1].send_keys(Keys.ESCAPE)
    assert browser.execute_script("return window.maskrcnnPage.selected") is None


def test_rle_decoding_class_filter_and_score_slider(server, browser, tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    path, = _save({"noise.png": pixels}, tmp_path)
    answer = _open(browser, server, [path])
    direct = httpx.post(f"{server}/v1/predict?score_thresh=0", content=path.read_bytes()).json()
    scores = [i["score"] for i in answer["instances"]]
    assert scores == [i["score"] for i in direct["instances"]] and len(scores) > 1
    count = lambda: int(browser.find_element(By.ID, "count").get_attribute("data-count"))  # noqa: E731
    assert count() == len(browser.find_elements(By.CSS_SELECTOR, "#instances li")) == len(scores)

    # the page decodes RLE as pycocotools does; the list's areas are the masks' pixel counts
    masks = _masks(answer)
    decoded = browser.execute_script(
        "const [rle, h, w] = arguments; const m = new Array(h * w).fill(0);"
        "forEachMaskPixel(rle, (x, y) => { m[y * w + x] = 1; }); return m;",
        answer["instances"][0]["mask"], 120, 160)
    np.testing.assert_array_equal(np.array(decoded).reshape(120, 160), masks[0])
    rows = browser.find_elements(By.CSS_SELECTOR, "#instances button")
    areas = [int(b.text.split(" px")[0].split()[-1]) for b in rows]
    assert areas == masks.reshape(len(masks), -1).sum(1).tolist()

    for box in browser.find_elements(By.CSS_SELECTOR, "#classes input"):
        box.click()
    assert count() == 0
    for box in browser.find_elements(By.CSS_SELECTOR, "#classes input"):
        box.click()
    steps = int(np.ceil(np.median(scores) * 100))
    _set_slider(browser, "score", Keys.ARROW_RIGHT * steps)
    value = float(browser.find_element(By.ID, "score").get_attribute("value"))
    assert value == pytest.approx(steps / 100)
    assert count() == sum(s >= value for s in scores) != len(scores)


def _downloaded(folder, name, timeout=30):
    path = folder / name
    deadline = time.monotonic() + timeout
    while not path.is_file() or list(folder.glob("*.crdownload")):
        assert time.monotonic() < deadline, f"{name} was not downloaded"
        time.sleep(0.1)
    return path


def test_folder_mode_downloads_every_answer(server, browser, tmp_path, downloads):
    rng = np.random.default_rng(5)  # smooth images: blob-like masks, quick to trace for the export
    images = {f"img{k}.png": np.asarray(Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).resize(
        (140, 90 + 10 * k), Image.BILINEAR)) for k in range(5)}
    paths = _save(images, tmp_path)
    _open(browser, server, paths)
    answers = [httpx.post(f"{server}/v1/predict?score_thresh=0", content=p.read_bytes()).json() for p in paths]
    gallery = browser.find_elements(By.CSS_SELECTOR, "#gallery button")
    assert [int(b.get_attribute("data-count")) for b in gallery] == [len(a["instances"]) for a in answers]
    gallery[2].click()
    WebDriverWait(browser, 30).until(lambda b: b.execute_script(
        "return window.maskrcnnPage.current === 2 && window.maskrcnnPage.drawn"))
    _screenshot(browser, keep_as="page_1280x800_folder.png")

    browser.find_element(By.ID, "download").click()  # COCO results, the default format
    results = json.loads(_downloaded(downloads, "results.json").read_text())
    expected = [{"image_id": k, "file_name": paths[k].name, "category_id": d["label"], "score": d["score"],
                 "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]],
                 "segmentation": d["mask"]}
                for k, answer in enumerate(answers) for d in answer["instances"]]
    assert len(results) == len(expected) > 5
    for got, want in zip(results, expected):
        assert got["bbox"] == pytest.approx(want.pop("bbox")) and got["segmentation"] == want.pop("segmentation")
        assert {k: got[k] for k in want} == want

    # a tool's format, with the slider at the median score: the download has what is shown
    scores = [d["score"] for a in answers for d in a["instances"]]
    _set_slider(browser, "score", Keys.ARROW_RIGHT * int(np.ceil(np.median(scores) * 100)))
    thresh = float(browser.find_element(By.ID, "score").get_attribute("value"))
    Select(browser.find_element(By.ID, "format")).select_by_value("labelme")
    browser.find_element(By.ID, "download").click()
    with zipfile.ZipFile(_downloaded(downloads, "labelme.zip")) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert sorted(files) == [f"labelme/img{k}.json" for k in range(5)]
    images = [{"file_name": p.name, "width": a["width"], "height": a["height"],
               "instances": [d for d in a["instances"] if d["score"] >= thresh]} for p, a in zip(paths, answers)]
    assert 0 < sum(len(i["instances"]) for i in images) < len(scores)
    direct = httpx.post(f"{server}/v1/export?format=labelme", json={"images": images}, timeout=60)
    with zipfile.ZipFile(io.BytesIO(direct.content)) as archive:
        assert files == {name: archive.read(name) for name in archive.namelist()}
    assert sum(len(json.loads(f)["shapes"]) for f in files.values()) > 0


def test_phone_width(server, browser, tmp_path):
    browser.set_window_size(390, 844)
    path, = _save({"noise.png": np.random.default_rng(7).integers(0, 256, (300, 400, 3), dtype=np.uint8)}, tmp_path)
    _open(browser, server, [path])
    width, scroll = browser.execute_script("return [innerWidth, document.documentElement.scrollWidth]")
    assert scroll <= width  # nothing wider than the screen
    view = _view(browser)
    assert view["w"] == pytest.approx(view["width"], abs=0.5) and view["width"] >= 0.85 * width
    list_top = browser.execute_script("return document.getElementById('instances').getBoundingClientRect().top")
    assert list_top >= view["top"] + view["height"]  # the list under the image
    font = browser.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('#instances button')).fontSize)")
    assert font >= 13
    _screenshot(browser, keep_as="page_phone_390.png")
