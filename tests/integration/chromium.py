"""Debian's headless Chromium for the dashboard's tests, and what they do in it as a person
would: sign in at the form, wait for the page."""

from __future__ import annotations

import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1100",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def sign_in(driver: webdriver.Chrome, token: str) -> None:
    """Fill the sign-in form the browser shows and submit it."""
    field = driver.find_element(By.NAME, "token")
    field.send_keys(token)
    field.submit()


def wait_for(driver: webdriver.Chrome, what, timeout: float = 10):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: what(d))


def shows_sign_in(driver: webdriver.Chrome) -> bool:
    return driver.title == "Sign in" and bool(driver.find_elements(By.NAME, "token"))
