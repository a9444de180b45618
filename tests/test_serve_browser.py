"""The web app's page in headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
driven by Selenium without Selenium Manager): a real server on a free local port over the
tiny VA-GPT run; upload the real clip (skipped without ``VAU_JAX_VTEST``) or pick a SynthVAD
example, wait for the result, hover and click the timeline, ask a follow-up, upload a
non-video, and read the browser console for errors.

``VAU_JAX_SERVE_SCREENSHOT=docs/serve.png`` saves the page of the SynthVAD example there
(the README's screenshot).
"""

import os
import re
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.isfile(CHROMIUM) and os.path.isfile(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def server(vagpt_run, tmp_path_factory):
    """``(url, upload_dir)`` of the app served by uvicorn in a thread (stopped afterwards)."""
    import uvicorn

    from vau_jax.serve.app import Settings, create_app

    up = str(tmp_path_factory.mktemp("uploads"))
    vtest = os.environ.get("VAU_JAX_VTEST")
    settings = Settings(upload_dir=up, max_seconds=8.0, vtest=vtest)
    app = create_app([vagpt_run], settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}/", up
    srv.should_exit = True
    thread.join(30)
    sock.close()


@pytest.fixture(scope="module")
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,1180")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def _severe(driver, allowed: tuple[str, ...] = ()) -> list[str]:
    """The console's errors since the last call, less those containing an ``allowed``."""
    logs = driver.get_log("browser")
    return [
        e["message"]
        for e in logs
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)
    ]


def _open(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#run option")) > 0
    )


def _explain(driver, seconds: str | None = None, timeout: float = 300) -> str:
    """Clicks Explain and waits for the result (its player drawn) or an error; returns
    ``"result"`` or ``"error"``."""
    if seconds is not None:
        driver.find_element(By.ID, "seconds").send_keys(seconds)
    driver.find_element(By.ID, "go").click()

    def settled(d):
        if d.find_element(By.ID, "error").is_displayed():
            return "error"
        clock = d.find_element(By.ID, "clock").text  # "t / duration s" once a frame is drawn
        if d.find_element(By.ID, "result").is_displayed() and "/" in clock:
            return "result"
        return False

    return WebDriverWait(driver, timeout, poll_frequency=0.5).until(settled)


def _check_timeline_and_seek(driver) -> None:
    svg = driver.find_element(By.ID, "timeline")
    curve = svg.find_element(By.ID, "curve")
    assert len(re.findall(r"[ML]", curve.get_attribute("d"))) >= 2
    ActionChains(driver).move_to_element_with_offset(svg, 120, 0).perform()
    tip = driver.find_element(By.ID, "hover-text")
    WebDriverWait(driver, 5).until(lambda d: tip.text)
    assert re.fullmatch(r"\d+\.\d\d s · p = \d\.\d{3}", tip.text), tip.text
    clock = driver.find_element(By.ID, "clock")
    assert clock.text.startswith("0.00 /")
    ActionChains(driver).move_to_element_with_offset(svg, 120, 0).click().perform()
    WebDriverWait(driver, 5).until(lambda d: not clock.text.startswith("0.00 /"))


def _chat(driver) -> str:
    box = driver.find_element(By.ID, "chat-input")
    box.send_keys("What happened in this video?", Keys.ENTER)
    WebDriverWait(driver, 240).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#chat-log .msg.bot, #chat-log .msg.sys")
    )
    assert not driver.find_elements(By.CSS_SELECTOR, "#chat-log .msg.sys")
    return driver.find_element(By.CSS_SELECTOR, "#chat-log .msg.bot").text


def test_real_clip_upload_timeline_and_chat(server, driver, vtest_path):
    url, up = server
    _open(driver, url)
    driver.find_element(By.ID, "video").send_keys(os.path.abspath(vtest_path))
    assert _explain(driver, seconds="4") == "result", driver.find_element(By.ID, "error").text
    assert "vtest.avi" in driver.find_element(By.ID, "video-name").text
    assert driver.find_element(By.ID, "explanation").text.strip()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#options tr")) == 1 + 8
    assert "32 frames at 8 fps" in driver.find_element(By.ID, "timeline-caption").text
    _check_timeline_and_seek(driver)
    _chat(driver)
    assert _severe(driver) == []
    assert os.listdir(up) == []


def test_synthvad_example_and_a_bad_upload(server, driver, tmp_path):
    url, up = server
    _open(driver, url)
    examples = Select(driver.find_element(By.ID, "example"))
    anomalous = next(
        o for o in examples.options if o.text.startswith("SynthVAD") and "normal" not in o.text
    )
    examples.select_by_value(anomalous.get_attribute("value"))
    assert _explain(driver) == "result", driver.find_element(By.ID, "error").text
    figures = driver.find_elements(By.CSS_SELECTOR, "#sets-strip figure")
    assert figures, "VA-GPT's SETS frames are shown"
    _check_timeline_and_seek(driver)
    figures[len(figures) // 2].click()  # seek to a sampled frame: its SETS patches show
    info = driver.find_element(By.ID, "overlay-info").text
    assert "SETS: sampled frame" in info, info
    _chat(driver)
    assert _severe(driver) == []
    shot = os.environ.get("VAU_JAX_SERVE_SCREENSHOT")
    if shot:  # the whole page, then the window as it was
        size = driver.get_window_size()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], height + 140)
        driver.save_screenshot(shot)
        driver.set_window_size(size["width"], size["height"])

    bad = tmp_path / "notes.txt"
    bad.write_text("not a video\n")
    _open(driver, url)
    driver.find_element(By.ID, "video").send_keys(str(bad))
    assert _explain(driver, timeout=60) == "error"
    message = driver.find_element(By.ID, "error").text
    assert message.startswith("notes.txt: cannot open as a video"), message
    assert _severe(driver, allowed=("415",)) == []  # the refused upload's own status only
    assert os.listdir(up) == []
