"""The dashboard in a real browser (Debian's headless Chromium) against a live worker: signed
in with the view token, as a person does."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from chromium import browser, shows_sign_in, sign_in, wait_for
from selenium import webdriver
from selenium.webdriver.common.by import By
from tokens import VIEW_TOKEN

from app.domain.operations import HOLDOUT
from app.domain.outcomes import CONVERTED, USED

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CPS = str(Path(sys.executable).with_name("cps"))
SESSION = "cps_session"


def test_dashboard_draws_live_charts_without_errors(kafka, make_worker):
    """Signed in with the view token, the demo's traffic on the charts, and its coupon plan's
    results: buyers granted a coupon order with it, so uses, conversions and a lift show
    within the demo's first seconds (its first occurrence runs at once). Then the ways out:
    an ended session, and signing out on the dashboard and on an HTML view."""
    worker = make_worker(CPS_MONITOR_INTERVAL_S="1", CPS_ATTRIBUTION_GRACE_MS="1000").start()
    demo = subprocess.Popen([CPS, "demo", "--rate", "300", "--events", "6000", "--buyers", "400"],
                            env=worker.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = browser()
    try:
        driver.get(worker.base + "/dashboard")
        assert shows_sign_in(driver), driver.page_source
        sign_in(driver, "not-the-view-token")
        problem = wait_for(driver, lambda d: d.find_elements(By.CLASS_NAME, "problem"))
        assert "wrong token" in problem[0].text and shows_sign_in(driver)
        assert driver.get_cookies() == []
        sign_in(driver, VIEW_TOKEN)
        wait_for(driver, lambda d: d.title == "CPS engine dashboard")
        assert driver.current_url == worker.base + "/dashboard"
        (cookie,) = driver.get_cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
            SESSION, True, "Strict"), cookie
        # The form came in place of the dashboard with a 401, and again with a 403 for the
        # wrong token (Chromium logs both; the dashboard's own log is checked below).
        signing_in = [entry["message"] for entry in driver.get_log("browser")]
        for path, status in (("/dashboard", 401), ("/signin", 403)):
            assert any(f"{worker.base}{path} - " in message and f"status of {status}" in message
                       for message in signing_in), signing_in
        # The demo goes on while the browser signs in; the charts fill meanwhile.
        deadline = time.monotonic() + 70
        state = {}
        while time.monotonic() < deadline:
            state = driver.execute_script(
                "return {updates: window.dashboard.updates, points: window.dashboard.points,"
                " errors: window.dashboard.errors,"
                " canvases: document.querySelectorAll('.uplot canvas').length,"
                " sinks: document.querySelectorAll('#workers tr').length,"
                " plans: document.querySelectorAll('#plans tr').length,"
                " operators: [...document.querySelectorAll('#operators tr')].map("
                "   row => [...row.cells].map(cell => cell.textContent)),"
                " results: [...document.querySelectorAll('#results tr')].map("
                "   row => [...row.cells].map(cell => cell.textContent))}")
            coupon = coupon_results(state["results"])
            if (state["updates"] >= 3 and state["canvases"] >= 3 and state["points"] > 50
                    and state["plans"] == 4 and len(state["results"]) == 6
                    and coupon["conversions"] and coupon["used"] and coupon["lifts"]
                    and assigned(state["operators"])):
                break
            time.sleep(1)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert state["updates"] >= 3 and state["canvases"] >= 3, state
        assert state["points"] > 50, state
        assert state["errors"] == [], state
        assert severe == [], severe
        assert state["sinks"] >= 2  # a header row and this worker
        assert state["plans"] == 4  # a header row and the demo's three plans
        # a header row, the coupon's two variants and its holdout, the reminder's and the
        # assign plan's own actions
        assert len(state["results"]) == 6, state["results"]
        # the assign plan's four operators: the sales ones got buyers, the service one none
        given = assigned(state["operators"])
        assert given["op-di"] == 0 and given["op-ann"] > 0 and len(given) == 4, given
        coupon = coupon_results(state["results"])
        assert coupon["conversions"] > 0 and coupon["used"] > 0, state["results"]
        assert coupon["lifts"] == 2, state["results"]  # each variant against the holdout
        records = kafka.read("operation_records", timeout=30, until=lambda found: {
            USED, CONVERTED} <= {record["value"]["kind"] for record in found})
        assert {USED, CONVERTED} <= {record["value"]["kind"] for record in records}
        # used only by the orders of buyers granted a coupon (the demo's `o-<run>c-...`)
        users = {record["value"]["ref"] for record in records if record["value"]["kind"] == USED}
        assert all(order.split("-")[-2] == "c" for order in users), users
        signs_out(driver, worker.base)
    finally:
        driver.quit()
        demo.kill()


def signs_out(driver: webdriver.Chrome, base: str) -> None:
    """A session that ends under the dashboard offers to sign in again; the dashboard's and an
    HTML view's "sign out" end the session, and the dashboard then asks to sign in."""
    driver.delete_cookie(SESSION)  # as when it expires: the next update is refused
    again = wait_for(driver, lambda d: d.find_elements(By.LINK_TEXT, "sign in again"))
    assert "signed out" in driver.find_element(By.ID, "status").text
    again[0].click()
    wait_for(driver, shows_sign_in)
    sign_in(driver, VIEW_TOKEN)
    wait_for(driver, lambda d: d.current_url == base + "/dashboard")
    press_sign_out(driver, base)
    driver.get(base + "/plans")  # an HTML view: the form brings the browser back to it
    sign_in(driver, VIEW_TOKEN)
    wait_for(driver, lambda d: d.current_url == base + "/plans")
    press_sign_out(driver, base)


def press_sign_out(driver: webdriver.Chrome, base: str) -> None:
    page = driver.current_url
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait_for(driver, shows_sign_in)
    assert driver.get_cookies() == [], page
    driver.get(base + "/dashboard")
    assert shows_sign_in(driver), page


def assigned(rows: list[list[str]]) -> dict[str, int]:
    """Each operator's assignments today on the dashboard's operators table (none yet: {})."""
    header, *body = rows or [[]]
    today = [dict(zip(header, row, strict=True)) for row in body]
    found = {row["operator"]: int(row["today"]) for row in today}
    return found if sum(found.values()) else {}


def coupon_results(rows: list[list[str]]) -> dict[str, int]:
    """The coupon plan's variants on the dashboard: conversions and uses summed, and how
    many show a lift against the holdout."""
    header, *body = rows or [[]]
    variants = [dict(zip(header, row, strict=True)) for row in body
                if row[:1] == ["demo-coupon"] and row[1] != HOLDOUT]
    return {"conversions": sum(int(row["conversions"]) for row in variants),
            "used": sum(int(row["used"]) for row in variants),
            "lifts": sum(1 for row in variants if row["lift"].endswith(")"))}
