"""A real browser: headless Chromium (Debian's chromium + chromium-driver) loads the review UI from a
live server, a reviewer records verdicts by keyboard only, and the verdicts are in the database.

Skips only on a developer machine without Chromium (run .ci/install-browser.sh); with $CI set a
missing browser is a failure, so CI can never pass by skipping this test.
"""
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from reportguard.review.app import create_app
from reportguard.review.auth import Auth
from reportguard.review.queue import make_queue
from reportguard.review.samples import sample_rows, write_run
from reportguard.review.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
EVIL_TITLE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">代办检测报告" onmouseover="window.__xss=3'
ITEMS = 6


def require_browser():
    import importlib.util
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package (dev extra)")
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test but {missing} are missing: run .ci/install-browser.sh")
    pytest.skip(f"Chromium not installed ({', '.join(missing)} missing); run .ci/install-browser.sh "
                "(apt-get install chromium chromium-driver). In CI ($CI set) this test runs and fails instead.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """The app under uvicorn on a free localhost port, in a thread, local-only mode."""
    import uvicorn

    rows = sample_rows(ITEMS)
    rows[0].update(title=EVIL_TITLE, p_report_sale=0.999, evidence=json.dumps([
        {"label": "report_sale", "text": "代办检测报告", "field": "title",
         "start": EVIL_TITLE.index("代办"), "end": EVIL_TITLE.index("代办") + 6}], ensure_ascii=False))
    queue = make_queue(write_run(rows, tmp_path / "run.jsonl"), ITEMS, "top")
    url = f"sqlite:///{tmp_path / 'verdicts.sqlite'}"
    store = Store(url)
    store.load_queue(queue)
    port = free_port()
    config = uvicorn.Config(create_app(store, Auth(local_only=True)), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the review server did not start")
        time.sleep(0.05)
    yield {"base": f"http://127.0.0.1:{port}", "queue": queue, "url": url}
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def press(driver, keys: str):
    """Type keys as a reviewer would: into whatever has focus, no clicks."""
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(driver).send_keys(keys).perform()


def wait_for_path(driver, path: str, timeout: float = 10):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(lambda d: d.current_url.split("?")[0].endswith(path))


def test_a_reviewer_records_verdicts_by_keyboard(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    q = server["queue"].queue_id
    browser.get(server["base"] + "/login")
    press(browser, "alice" + Keys.ENTER)  # the name field has focus on load
    wait_for_path(browser, "/")
    press(browser, "1")  # open the first queue at the first unreviewed item
    wait_for_path(browser, f"/q/{q}/0")

    # The hostile title is shown as text, and nothing in it ran.
    title = browser.find_element(By.ID, "listing-title")
    assert "<script>window.__xss=1</script>" in title.text
    assert title.find_elements(By.CSS_SELECTOR, "script, img") == []
    assert title.find_element(By.CSS_SELECTOR, "mark.ev-report_sale").text == "代办检测报告"
    assert browser.execute_script("return window.__xss === undefined")

    # Item 0: untick report_sale (1), write a comment (c ... Esc), save (s).
    predicted = server["queue"].items[0]["record"]["labels"]
    assert "report_sale" in predicted
    press(browser, "1")
    assert not browser.find_element(By.ID, "label-report_sale").is_selected()
    press(browser, "c")
    press(browser, "seller only sells templates")
    press(browser, Keys.ESCAPE)
    press(browser, "s")
    wait_for_path(browser, f"/q/{q}/1")

    # The rest: "the model is right" (a) on each, then the queue is done.
    for position in range(1, ITEMS):
        wait_for_path(browser, f"/q/{q}/{position}")
        press(browser, "a")
    wait_for_path(browser, f"/q/{q}/done")
    assert f"You have reviewed {ITEMS} of {ITEMS}" in browser.find_element(By.TAG_NAME, "main").text

    store = Store(server["url"])
    first = store.verdict(q, 0, "alice")
    expected = [x for x in ("report_sale", "false_ad", "credential_missing", "testing_service")
                if x in predicted and x != "report_sale"]
    assert first["labels"] == expected
    assert first["decisions"]["report_sale"] == "reject"
    assert first["comment"] == "seller only sells templates" and first["source"] == "web"
    assert len([v for v in store.verdicts(q) if v["reviewer"] == "alice"]) == ITEMS
