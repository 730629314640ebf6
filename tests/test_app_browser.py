"""``egain app`` in a real browser: headless Chromium uploads a picture, runs an inversion and reads
the scores back, then saves a screenshot (``EGAIN_APP_SCREENSHOT=PATH`` keeps it, e.g. docs/app.png).

Skipped, with the reason, where gradio/selenium (``egain[app]``, ``selenium``) or Debian's
chromium + chromium-driver are not installed (scripts/test.sh installs them when apt can).
The app listens on 127.0.0.1 only; Chromium runs with networking features off and a fresh profile.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _requirements() -> str | None:
    for module in ("gradio", "selenium"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install 'egain[app]' selenium)"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_server(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "EGAIN_NO_PROGRESS": "1",
        "OMP_NUM_THREADS": "1",
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log = open(tmp_path / "app.log", "w")  # noqa: SIM115 (open while the server runs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "egain", "app", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                raise AssertionError(f"egain app exited: {(tmp_path / 'app.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("egain app did not answer within 120 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(_requirements() is not None, reason=str(_requirements()))
def test_app_in_headless_chromium(app_server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1400,1000")
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(app_server)
        wait = WebDriverWait(driver, 120)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#egain-input input[type=file]"))
        picture = sorted((ROOT / "egain" / "assets" / "examples").glob("eval_*.png"))[0]
        upload.send_keys(str(picture))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#egain-input img"))
        for label in ("e4e", "hfgi"):  # several methods side by side (egain is ticked by default)
            driver.find_element(
                By.XPATH, f"//*[@id='egain-methods']//label[.//span[normalize-space()='{label}']]"
            ).click()
        driver.find_element(By.ID, "egain-invert").click()
        wait.until(lambda d: "egain" in d.find_element(By.ID, "egain-scores").text)
        wait.until(lambda d: all(m in d.find_element(By.ID, "egain-scores").text for m in ("e4e", "hfgi")))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#egain-gallery img")) >= 4)
        id_score = float(driver.find_element(By.ID, "egain-scores").text.split("\negain", 1)[1].split()[0])
        # the ID scorer (synthfaces CosFace) is strict: a blurry reconstruction scores well below 1
        assert 0.2 < id_score <= 1.0
        shot = os.environ.get("EGAIN_APP_SCREENSHOT") or str(tmp_path / "app.png")
        driver.save_screenshot(shot)
        assert Path(shot).stat().st_size > 10_000
    finally:
        driver.quit()
