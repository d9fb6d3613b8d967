"""The web page in a real browser: headless Chromium (Debian's chromium + chromium-driver, which
.ci/run installs) driven by selenium against a real uvicorn server."""

import io
import shutil
import socket
import threading
import time

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
from selenium.webdriver.support.ui import WebDriverWait

from maskrcnn.serve.app import ServedModel, ServeOptions, create_app

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")
WIDTH, HEIGHT = 160, 120


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
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install chromium and chromium-driver (apt), as .ci/run does"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


def _canvas_pixels(browser) -> np.ndarray:
    """(H, W, 3) uint8 of the page's canvas."""
    flat = browser.execute_script(
        "const c = document.getElementById('canvas');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);")
    return np.array(flat, dtype=np.uint8).reshape(HEIGHT, WIDTH, 4)[..., :3]


def _shown_count(browser) -> int:
    return int(browser.find_element(By.ID, "count").get_attribute("data-count"))


def test_upload_draw_filter_and_slider(server, browser, tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image_path = tmp_path / "noise.png"
    Image.fromarray(pixels).save(image_path)
    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_element(By.ID, "model").text.startswith("tiny_r18"))
    browser.find_element(By.ID, "file").send_keys(str(image_path))
    wait.until(lambda b: b.execute_script("return window.maskrcnnPage.drawn"))

    # the page's JSON is the server's answer for this image
    result = browser.execute_script("return window.maskrcnnPage.result")
    direct = httpx.post(f"{server}/v1/predict?score_thresh=0", content=image_path.read_bytes()).json()
    assert [i["score"] for i in result["instances"]] == [i["score"] for i in direct["instances"]]
    scores = [i["score"] for i in result["instances"]]
    assert len(scores) > 1 and _shown_count(browser) == len(scores)  # slider at 0: all shown

    # the page decodes RLE as pycocotools does
    masks = [mask_utils.decode({"size": i["mask"]["size"], "counts": i["mask"]["counts"].encode()})
             for i in result["instances"]]
    decoded = browser.execute_script(
        "const [rle, h, w] = arguments; const m = new Array(h * w).fill(0);"
        "forEachMaskPixel(rle, (x, y) => { m[y * w + x] = 1; }); return m;",
        result["instances"][0]["mask"], HEIGHT, WIDTH)
    np.testing.assert_array_equal(np.array(decoded).reshape(HEIGHT, WIDTH), masks[0])

    # mask pixels are tinted; with every class unticked the canvas is the image itself
    drawn = _canvas_pixels(browser).astype(int)
    covered = np.any(masks, axis=0)
    assert covered.sum() > 50
    tint = np.abs(drawn - pixels).sum(-1)
    assert (tint[covered] > 30).mean() > 0.8
    for box in browser.find_elements(By.CSS_SELECTOR, "#classes input"):
        box.click()
    assert _shown_count(browser) == 0
    assert np.abs(_canvas_pixels(browser).astype(int) - pixels).max() <= 2
    for box in browser.find_elements(By.CSS_SELECTOR, "#classes input"):
        box.click()
    assert _shown_count(browser) == len(scores)

    # the slider re-draws from the same answer
    steps = int(np.ceil(np.median(scores) * 100))
    browser.find_element(By.ID, "score").send_keys(Keys.ARROW_RIGHT * steps)
    value = float(browser.find_element(By.ID, "score").get_attribute("value"))
    assert value == pytest.approx(steps / 100)
    shown = _shown_count(browser)
    assert shown == sum(s >= value for s in scores) and shown != len(scores)
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert Image.open(tmp_path / "page.png").size[0] > WIDTH
