"""The web page in a real headless Chromium: ask a question and see the answer highlighted in the context,
start a generation and watch the text grow as tokens stream. Screenshots go to $CANAO_SCREENSHOTS when set
(docs/img/ holds the committed ones)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="needs Debian chromium and chromium-driver (installed by .ci/run)"
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()


def _shot(driver, name: str) -> None:
    target = os.environ.get("CANAO_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(target) / name))


def _wait(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


def test_question_answering_highlights_the_answer(live, browser):
    from selenium.webdriver.common.by import By

    context = "The compiler was written by the canao team in 2026. It fuses layers and generates C code."
    question = "Who wrote the compiler?"
    want = httpx.post(f"{live.url}/v1/qa", json={"question": question, "context": context}).json()
    answer = want["results"][0]["answers"][0]
    browser.get(live.url + "/")
    _wait(lambda: browser.find_element(By.ID, "qa-model").get_attribute("value") == "qa")
    box = browser.find_element(By.ID, "qa-context")
    box.clear()
    box.send_keys(context)
    field = browser.find_element(By.ID, "qa-question")
    field.clear()
    field.send_keys(question)
    browser.find_element(By.ID, "qa-ask").click()
    mark = _wait(lambda: browser.find_elements(By.ID, "qa-mark"))[0]
    assert mark.text == answer["text"] == context[answer["start"] : answer["end"]]
    assert browser.find_element(By.ID, "qa-answer").text == answer["text"]
    view = browser.find_element(By.ID, "qa-highlight").text
    assert view == context  # the whole context is shown, the answer marked in place
    assert "ms end to end" in browser.find_element(By.ID, "qa-status").text
    _shot(browser, "page-qa.png")


def test_generation_streams_into_the_page(live, browser):
    from selenium.webdriver.common.by import By

    browser.get(live.url + "/")
    browser.find_element(By.ID, "tab-gen").click()
    _wait(lambda: browser.find_element(By.ID, "gen-model").get_attribute("value") == "lm")
    for field, value in (("gen-max", "200"), ("gen-temp", "0.8")):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "gen-start").click()
    lengths = []
    deadline = time.monotonic() + 60
    while "tokens/s" not in browser.find_element(By.ID, "gen-status").text and time.monotonic() < deadline:
        lengths.append(len(browser.find_element(By.ID, "gen-output").text))
        time.sleep(0.01)
    status = browser.find_element(By.ID, "gen-status").text
    assert "200 tokens" in status and "stopped: max_new_tokens" in status, status
    growing = sorted(set(lengths))
    assert len(growing) >= 3, f"the output did not grow step by step: {growing}"  # streamed, not all at once
    assert browser.find_element(By.ID, "gen-output").text.startswith("ROMEO:")
    _shot(browser, "page-generate.png")
