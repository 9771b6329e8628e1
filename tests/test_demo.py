"""demo.py: the functions behind the page, the server through gradio_client, and the page in a real browser."""

import importlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import demo

ROOT = Path(__file__).resolve().parents[1]
RED_THREE, PLAIN_SEVEN = ROOT / "sample_images/3_pen_red.jpg", ROOT / "sample_images/7_pen_plain.jpg"
SEVEN = [(-75, -100), (75, -100), (-15, 110)]  # a 7 drawn on the page, offsets from the canvas's centre
# README's picture of the page (docs/demo.png) is refreshed by `DEMO_SCREENSHOT=docs/demo.png make test`;
# a plain test run leaves it alone.
SCREENSHOT = os.environ.get("DEMO_SCREENSHOT")
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SERVER_START_S = 180  # TensorFlow, Gradio and the model load first: tens of seconds on a small CPU
ANSWER_S = 30  # the most the page may take to show an answer or a message


@pytest.fixture(scope="module")
def model():
    if not (ROOT / "model.zip").exists():
        pytest.skip("model.zip is absent: run `make train` first")
    from evaluate_func import load_saved_model

    return load_saved_model(ROOT / "model.zip")


def canvas_value(drawing):
    """The Sketchpad's value as Gradio hands it to the page's function: grey arrays, white paper, black ink."""
    white = np.full(drawing.shape, 255, np.uint8)
    return {"background": white, "layers": [np.zeros_like(drawing)], "composite": drawing}


def drawn_seven():
    """A mouse-drawn 7 on the 400x400 canvas: a bar and a long diagonal, in the brush's black."""
    picture = Image.new("L", demo.CANVAS_SIZE, 255)
    ImageDraw.Draw(picture).line([(110, 90), (290, 90), (180, 330)], fill=0, width=28, joint="curve")
    return np.asarray(picture)


def png_claiming(width, height):
    """A PNG file of a few bytes whose header claims width x height pixels: a decompression bomb."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture
def bad_uploads(tmp_path):
    """Two uploads that are no usable photo: a file that is no image, and a decompression bomb."""
    broken, huge = tmp_path / "broken.jpg", tmp_path / "huge.png"
    broken.write_bytes(b"not a picture\n" * 20)
    huge.write_bytes(png_claiming(50_000, 50_000))
    return broken, huge


# --------------------------------------------------------------------------- the functions behind the page


@pytest.mark.parametrize(("path", "addend"), [(RED_THREE, 4), (PLAIN_SEVEN, 9)])
def test_photo_is_read_and_added(model, path, addend):
    digit = int(path.name[0])
    network_input, picture, digit_bars, sum_bars, status = demo.read_photo(model, str(path), addend)
    assert network_input.shape == (28, 28, 1)
    with Image.open(picture) as shown:
        expected = np.rint(network_input[..., 0]).astype(np.uint8).repeat(demo.ZOOM, 0).repeat(demo.ZOOM, 1)
        np.testing.assert_array_equal(np.asarray(shown), expected)
    assert max(digit_bars, key=digit_bars.get) == str(digit)
    assert max(sum_bars, key=sum_bars.get) == str(digit + addend)
    assert status == f"**{digit} + {addend} = {digit + addend}**"


def test_drawing_is_read_and_added(model):
    network_input, _, digit_bars, sum_bars, status = demo.read_drawing(model, canvas_value(drawn_seven()), 3)
    assert max(digit_bars, key=digit_bars.get) == "7" and max(sum_bars, key=sum_bars.get) == "10"
    assert status == "**7 + 3 = 10**"
    assert demo.change_addend(model, network_input, 8)[2] == "**7 + 8 = 15**"  # the same input, a new addend


def test_a_scribble_is_answered_with_a_warning_and_a_digit_without(model):
    click = Image.new("L", demo.CANVAS_SIZE, 255)  # a single click of the brush: a dot
    ImageDraw.Draw(click).ellipse([190, 190, 210, 210], fill=0)
    *_, status = demo.read_drawing(model, canvas_value(np.asarray(click)), 3)
    assert status.endswith(f"<br>{demo.UNLIKE_A_DIGIT}")
    *_, status = demo.read_drawing(model, canvas_value(drawn_seven()), 3)
    assert demo.UNLIKE_A_DIGIT not in status


def test_the_same_picture_is_one_file_written_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "PICTURE_DIR", tmp_path)
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    first, again = demo.picture_file(pixels), demo.picture_file(pixels.copy())
    assert first == again and [path.name for path in tmp_path.iterdir()] == [Path(first).name]
    with Image.open(first) as shown:
        np.testing.assert_array_equal(np.asarray(shown), pixels)


def test_bars_are_probabilities(model):
    _, _, digit_bars, sum_bars, _ = demo.read_photo(model, str(PLAIN_SEVEN), 0)
    for bars, classes in ((digit_bars, 10), (sum_bars, 19)):
        assert list(bars) == [str(label) for label in range(classes)]
        assert sum(bars.values()) == pytest.approx(1, abs=1e-4)


def test_picking_a_tab_reads_its_picture(model):
    assert demo.pick_tab(model, demo.DRAW, canvas_value(drawn_seven()), 5)[-1] == "**7 + 5 = 12**"
    assert demo.pick_tab(model, demo.UPLOAD, str(RED_THREE), 5)[-1] == "**3 + 5 = 8**"
    assert demo.pick_tab(model, demo.UPLOAD, None, 5) == (demo.UPLOAD, None, None, None, None, demo.PROMPT)
    assert demo.read_drawing(model, canvas_value(drawn_seven()), 5, demo.UPLOAD) == (gr.skip(),) * 5  # unseen


def test_disagreeing_outputs_are_pointed_out():
    assert demo.describe(7, 3, 11).startswith("**7 + 3 → 11**: the sum output is not the digit output plus 3")


@pytest.mark.parametrize(
    "canvas",
    [
        None,
        canvas_value(np.full(demo.CANVAS_SIZE, 255, np.uint8)),
        {"background": None, "layers": [], "composite": None},
    ],
    ids=["no value", "blank canvas", "cleared canvas"],
)
def test_empty_canvas_gets_the_prompt(model, canvas):
    assert demo.read_drawing(model, canvas, 3) == (None, None, None, None, demo.PROMPT)


def test_bad_uploads_get_a_message_in_plain_words(model, bad_uploads, tmp_path):
    """The file named once, what is wrong said plainly: no server path, no quote from Pillow."""
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 200), 250).save(blank)
    answers = [demo.read_photo(model, str(path), 3) for path in (*bad_uploads, blank)]
    assert all(answer[:4] == (None, None, None, None) for answer in answers)
    assert [answer[4] for answer in answers] == [
        "**Could not read broken.jpg.** It is not an image file this page can open (PNG, JPEG, GIF, WebP, ...).",
        "**Could not read huge.png.** It has too many pixels to open safely; a photo of a few megapixels is plenty.",
        "**Could not read blank.png.** No digit stands out in it: it looks blank, uniform or too faint.",
    ]


def test_nothing_to_answer_yet(model):
    assert demo.read_photo(model, None, 3) == (None, None, None, None, demo.PROMPT)
    assert demo.change_addend(model, None, 3) == (gr.skip(),) * 3  # the page's prompt or message stays


def test_import_loads_serves_prints_and_writes_nothing(monkeypatch, tmp_path, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("importing demo.py must not do this")

    monkeypatch.setattr("evaluate_func.load_saved_model", refuse)
    monkeypatch.setattr("gradio.Blocks.launch", refuse)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "demo")
    importlib.import_module("demo")
    assert capsys.readouterr() == ("", "") and not any(tmp_path.iterdir())


def test_the_page_is_served_to_this_machine_only(monkeypatch, model):
    """127.0.0.1 (not 0.0.0.0, which opens the page, and the network, to every machine around), no share link,
    no analytics, the chosen port."""
    served = {}

    def launch(app, **options):
        served.update(options, analytics=app.analytics_enabled)

    monkeypatch.setattr("evaluate_func.load_saved_model", lambda path: model)
    monkeypatch.setattr("gradio.Blocks.launch", launch)
    demo.main(["--port", "7861"])
    assert served["server_name"] == "127.0.0.1" and served["server_port"] == 7861
    assert served["share"] is False and served["analytics"] is False


@pytest.fixture
def bad_model_files(tmp_path):
    """A missing file, a file that is no model, and model.zip with a stretch of its compressed bytes zeroed."""
    corrupt = bytearray((ROOT / "model.zip").read_bytes())
    corrupt[100_000:100_200] = bytes(200)
    (tmp_path / "corrupt.zip").write_bytes(corrupt)
    (tmp_path / "notes.txt").write_text("not a model")
    return [tmp_path / name for name in ("missing.zip", "notes.txt", "corrupt.zip")]


def test_bad_model_is_one_error_line(capsys, bad_model_files):
    for path in bad_model_files:
        with pytest.raises(SystemExit) as exit_info:
            demo.main(["--model", str(path)])
        lines = capsys.readouterr().err.splitlines()
        assert exit_info.value.code == 2 and len(lines) == 1
        assert lines[0].startswith("demo.py: error: cannot load the model: ")


@pytest.mark.slow
def test_the_command_prints_only_its_own_error_on_stderr(tmp_path):
    """TensorFlow's C++ start-up notices (absl, oneDNN, cuInit) stay off the terminal, with no setting made."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "demo.py", "--model", str(tmp_path / "missing.zip")],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("demo.py: error: cannot load the model: ") and done.stderr.count("\n") == 1


def test_taken_port_is_one_error_line(monkeypatch, capsys, model):
    monkeypatch.setattr("evaluate_func.load_saved_model", lambda path: model)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            demo.main(["--port", str(port)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"demo.py: error: port {port} is in use; pick another with --port\n"


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_bad_port_is_refused_by_argparse(capsys, port):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--port", port])
    assert exit_info.value.code == 2 and "argument --port" in capsys.readouterr().err


# --------------------------------------------------------------------------- the server


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_served(url, process, log):
    """Return once `url` answers; fail if the server exits or takes longer than SERVER_START_S."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"demo.py exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"demo.py did not answer on {url} within {SERVER_START_S} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python demo.py --port N` on a free port, its URL once it answers; stopped after the module's tests."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "demo.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "demo.py", "--port", str(port)], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_served(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_server_answers_through_gradio_client(server, bad_uploads):
    client = Client(server, verbose=False)
    picture, digit_bars, sum_bars, status = client.predict(handle_file(PLAIN_SEVEN), 5, api_name="/read_photo")
    assert (digit_bars["label"], sum_bars["label"], status) == ("7", "12", "**7 + 5 = 12**")
    with Image.open(picture) as image:
        assert image.size == (28 * demo.ZOOM, 28 * demo.ZOOM)
    for bad_upload in bad_uploads:
        *_, status = client.predict(handle_file(bad_upload), 5, api_name="/read_photo")
        assert status.startswith(f"**Could not read {bad_upload.name}.**")
    *_, status = client.predict(handle_file(RED_THREE), 2, api_name="/read_photo")  # still serving
    assert status == "**3 + 2 = 5**"


# --------------------------------------------------------------------------- the page in a browser


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by the Debian chromedriver; Selenium downloads nothing."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(argument)  # --no-sandbox: CI runs as root
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # to list the page's requests
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def visible(driver, css=None, xpath=None):
    """The first visible element that matches a CSS selector or an XPath, once the page has drawn it."""
    by, selector = (By.CSS_SELECTOR, css) if css else (By.XPATH, xpath)

    def first_visible(_):
        return next((element for element in driver.find_elements(by, selector) if element.is_displayed()), False)

    return WebDriverWait(driver, ANSWER_S, ignored_exceptions=[StaleElementReferenceException]).until(first_visible)


def draw(driver, *strokes):
    """Draw each stroke on the canvas with the mouse (points are offsets from its centre): press, move, release."""
    canvas = visible(driver, css="#canvas canvas")
    for start, *rest in strokes:
        actions = ActionChains(driver).move_to_element_with_offset(canvas, *start).click_and_hold()
        for point in rest:
            actions.move_to_element_with_offset(canvas, *point)
        actions.release().perform()


def upload(driver, path):
    """Put a file in the upload box, taking out the one already there."""
    for clear in driver.find_elements(By.CSS_SELECTOR, "#photo button[aria-label='Clear']"):
        clear.click()
    file_inputs = WebDriverWait(driver, ANSWER_S).until(
        lambda _: driver.find_elements(By.CSS_SELECTOR, "#photo input[type=file]")
    )
    file_inputs[0].send_keys(str(path))


def wait_for_status(driver, expected):
    """Wait until the page's status line starts with `expected`; fail with what it says instead."""
    status = driver.find_element(By.ID, "status")
    try:
        WebDriverWait(driver, ANSWER_S).until(lambda _: status.text.startswith(expected))
    except TimeoutException:
        pytest.fail(f"after {ANSWER_S} s the status line reads {status.text!r}, not {expected!r}")


def requested_urls(driver):
    """The URLs the page asked for so far, from chromium's network log."""
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return {event["params"]["request"]["url"] for event in events if event["method"] == "Network.requestWillBeSent"}


def brush_picked(driver):
    """Wait until the canvas's brush is picked, as a person sees it: its button highlighted."""
    visible(driver, css="#canvas button[aria-label='Brush'].highlight")


def open_tab(driver, name):
    visible(driver, xpath=f"//button[@role='tab'][normalize-space()='{name}']").click()


def pick_addend(driver, addend):
    visible(driver, xpath=f"//*[@id='addend']//label[normalize-space()='{addend}']").click()


@pytest.mark.slow
def test_page_reads_a_drawn_digit(server, browser):
    """The brush is picked when the page opens and after "Clear canvas": drawing needs no click first."""
    browser.get(server)
    brush_picked(browser)
    draw(browser, SEVEN)
    wait_for_status(browser, "7 + 3 = 10")
    pick_addend(browser, 5)
    wait_for_status(browser, "7 + 5 = 12")
    tops = "#digit [data-testid='label-output-value'], #sum [data-testid='label-output-value']"
    WebDriverWait(browser, ANSWER_S, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda _: [top.text for top in browser.find_elements(By.CSS_SELECTOR, tops)] == ["7", "12"]
    )  # the bars agree with the status line
    assert visible(browser, css="#network-input img").size["width"] >= 28 * demo.ZOOM  # the input, enlarged
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)
    outside = {url for url in requested_urls(browser) if not url.startswith((server, "data:", "blob:"))}
    assert not outside, f"the page fetched from outside this machine: {sorted(outside)}"
    visible(browser, css="button[aria-label='Clear canvas']").click()
    wait_for_status(browser, demo.PROMPT)
    brush_picked(browser)
    draw(browser, SEVEN)
    wait_for_status(browser, "7 + 5 = 12")


@pytest.mark.slow
def test_answer_belongs_to_the_picture_on_screen(server, browser):
    """A drawing, then a photo on the other tab, then back to the drawing: a new addend is added to the drawing."""
    browser.get(server)
    brush_picked(browser)
    draw(browser, SEVEN)
    wait_for_status(browser, "7 + 3 = 10")
    open_tab(browser, "Upload a photo")
    upload(browser, RED_THREE)
    wait_for_status(browser, "3 + 3 = 6")
    open_tab(browser, "Draw")
    pick_addend(browser, 5)
    wait_for_status(browser, "7 + 5 = 12")


@pytest.mark.slow
def test_page_tells_what_is_wrong_and_goes_on(server, browser, bad_uploads):
    browser.get(server)
    open_tab(browser, "Upload a photo")
    broken, huge = bad_uploads
    upload(browser, broken)
    wait_for_status(browser, "Could not read broken.jpg. It is not an image file this page can open")
    upload(browser, huge)
    wait_for_status(browser, "Could not read huge.png. It has too many pixels to open safely")
    upload(browser, RED_THREE)
    wait_for_status(browser, "3 + 3 = 6")


@pytest.mark.slow
def test_addend_choices_sit_on_one_line(server, browser):
    browser.get(server)
    visible(browser, css="#addend label")
    choices = browser.find_elements(By.CSS_SELECTOR, "#addend label")
    assert len(choices) == 10 and len({choice.location["y"] for choice in choices}) == 1


@pytest.mark.slow
def test_phone_shows_the_answer_without_scrolling(server, browser):
    """In a 390x844 phone window (a 390x701 page: chromium keeps the rest) a drawing's answer shows with the canvas."""
    desktop = browser.get_window_size()
    browser.set_window_size(390, 844)
    try:
        browser.get(server)
        brush_picked(browser)
        draw(browser, SEVEN)
        wait_for_status(browser, "7 + 3 = 10")
        top, bottom, scrolled, width, height = browser.execute_script(
            "const box = document.getElementById('status').getBoundingClientRect();"
            "return [box.top, box.bottom, scrollY, innerWidth, innerHeight]"
        )
        assert width == 390 and scrolled == 0 and 0 <= top < bottom <= height
    finally:
        browser.set_window_size(desktop["width"], desktop["height"])
