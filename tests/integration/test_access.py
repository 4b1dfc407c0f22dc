"""Who may call what, on a real worker: every route of the access table with every kind of
token answers the status the table says (SPEC 8), and a browser's session reads as its
token did."""

from __future__ import annotations

import http.client
import time

import orjson
import pytest
from shop_setup import cps_shop
from tokens import ADMIN_TOKEN, VIEW_TOKEN

from app.web.access import ROUTES

METRICS_TOKEN = "test-metrics"
LINK_BODY = {"channel_id": "ch", "promoter_id": "p1", "shop_id": "s1", "item_id": "i1",
             "url": "https://shop.example.com/i1"}

# One request per route: (who may call it as SPEC 8 says, method, path, body, the status it
# answers once admitted). A route added to the table without a request here fails the test.
REQUESTS = {
    "/c/{token}": ("anyone", "GET", "/c/{link}?uid=u-matrix", None, 302),
    "/health": ("anyone", "GET", "/health", None, 200),
    "/ready": ("anyone", "GET", "/ready", None, 200),
    "/metrics": ("metrics", "GET", "/metrics", None, 200),
    "/signin": ("anyone", "GET", "/signin", None, 200),
    "/signout": ("anyone", "POST", "/signout", b"", 303),
    "/demo/product": ("anyone", "GET", "/demo/product?item=i1", None, 200),
    "/static/{name}": ("anyone", "GET", "/static/uPlot.min.css", None, 200),
    "/dashboard": ("readers", "GET", "/dashboard", None, 200),
    "/monitor": ("readers", "GET", "/monitor", None, 200),
    "/monitor/local": ("readers", "GET", "/monitor/local", None, 200),
    "/lag": ("readers", "GET", "/lag?format=json", None, 200),
    "/alerts": ("readers", "GET", "/alerts", None, 200),
    "/sinks": ("readers", "GET", "/sinks?format=json", None, 200),
    "/plans": ("readers", "GET", "/plans?format=json", None, 200),
    "/plans/{plan_id}": ("readers", "GET", "/plans/no-such-plan?format=json", None, 404),
    "/members/{buyer_id}/records": ("readers", "GET", "/members/u1/records?format=json",
                                    None, 200),
    "/operators/{operator_id}/assignments": ("readers", "GET",
                                             "/operators/op1/assignments?format=json", None, 200),
    "/clicks": ("readers", "GET", "/clicks?buyer_id=u1&format=json", None, 200),
    "/orders/{order_id}": ("promoter", "GET", "/orders/o1?format=json", None, 200),
    "/promoters/{promoter_id}/orders": ("promoter", "GET", "/promoters/p1/orders?format=json",
                                        None, 200),
    "/accounts/{account_id}": ("promoter", "GET", "/accounts/p1?format=json", None, 200),
    "/subscribe": ("promoter", "GET", "/subscribe?stream=attributions&promoter_id=p1", None, 200),
    # Admin requests that change nothing once admitted.
    "/admin/{kind}/{ident}": ("admin", "PUT", "/admin/shops/s-matrix", b"{not json", 400),
    "/admin/links": ("admin", "POST", "/admin/links", b"{}", 400),
    "/admin/promoter-tokens": ("admin", "POST", "/admin/promoter-tokens", b"{}", 400),
    "/admin/sinks/{ident}/{action}": ("admin", "POST", "/admin/sinks/no-such-sink/pause", b"", 404),
    "/admin/plans/{ident}/{action}": ("admin", "POST", "/admin/plans/no-such-plan/pause", b"", 404),
    "/admin/plans/pause-all": ("admin", "POST", "/admin/plans/pause-all", b"", 200),
    "/admin/lists/{ident}": ("admin", "PUT", "/admin/lists/l-matrix", b"not a list", 400),
    "/admin/engine/{action}": ("admin", "POST", "/admin/engine/nap", b"", 404),
}


ALLOWED = {"metrics": {"metrics"}, "readers": {"view", "admin"},
           "promoter": {"view", "admin", "promoter"}, "admin": {"admin"}}


def expected(route: str, token: str) -> int:
    """The status SPEC 8 gives `token` (a key of the test's tokens) on `route`."""
    who, *_request, admitted = REQUESTS[route]
    if who == "anyone":
        return admitted
    if token == "none":
        return 401
    return admitted if token in ALLOWED[who] else 403


def status_of(worker, method: str, path: str, body: bytes | None, token: str | None,
              headers: dict | None = None) -> int:
    """The answer's status only: an event stream is not read to its end."""
    connection = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=10)
    try:
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        connection.request(method, path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def configure_and_attribute(worker, kafka, events) -> str:
    cps_shop(worker)
    now = int(time.time() * 1000)
    status, link = worker.admin("POST", "/admin/links", LINK_BODY)
    assert status == 201
    kafka.produce("clicks", [("u1", events.click("c1", "u1", now - 60_000))])
    kafka.produce("orders", [("o1", events.order("o1", "u1", now, event=e))
                             for e in ("created", "paid")])
    kafka.read("attributions", until=lambda found: any(r["value"]["order_id"] == "o1"
                                                       for r in found), timeout=60)
    return link["token"]


def promoter_token(worker, promoter_id: str, ttl_s: int) -> str:
    status, answer = worker.admin("POST", "/admin/promoter-tokens",
                                  {"promoter_id": promoter_id, "ttl_s": ttl_s})
    assert status == 201 and answer["promoter_id"] == promoter_id
    return answer["token"]


@pytest.mark.kafka
def test_every_route_with_every_token_answers_what_the_table_says(make_worker, kafka, events):
    assert set(REQUESTS) == set(ROUTES), "give each route of the access table a request"
    worker = make_worker(CPS_METRICS_TOKEN=METRICS_TOKEN,
                         CPS_ATTRIBUTION_GRACE_MS="1000").start()
    link = configure_and_attribute(worker, kafka, events)
    expiring = promoter_token(worker, "p1", 1)
    tokens = {"none": None, "wrong": "not-a-token", "view": VIEW_TOKEN, "admin": ADMIN_TOKEN,
              "metrics": METRICS_TOKEN, "promoter": promoter_token(worker, "p1", 600),
              "other promoter": promoter_token(worker, "p2", 600)}
    time.sleep(1.1)
    tokens["expired promoter"] = expiring

    wrong = []
    for route, (_who, method, path, body, _admitted) in REQUESTS.items():
        for name, token in tokens.items():
            got = status_of(worker, method, path.format(link=link), body, token)
            if got != expected(route, name):
                wrong.append(f"{method} {path} with {name}: {got}, not {expected(route, name)}")
    assert not wrong, "\n".join(wrong)

    # What a promoter reads of its order: its own money only.
    status, _headers, raw = worker.request("GET", "/orders/o1?format=json",
                                           token=tokens["promoter"])
    assert status == 200
    assert {row["account_id"] for row in orjson.loads(raw)["commissions"]} == {"p1"}


@pytest.mark.kafka
def test_a_browser_session_reads_as_its_token_and_never_administers(make_worker):
    worker = make_worker().start()
    status, headers, _ = worker.request(
        "POST", "/signin", f"token={VIEW_TOKEN}&next=/lag".encode(), token=None,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["Location"] == "/lag"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = {"Cookie": cookie.split(";")[0]}
    assert worker.request("GET", "/lag?format=json", token=None, headers=session)[0] == 200
    assert status_of(worker, "GET", "/subscribe?stream=commissions", None, None,
                     headers=session) == 200
    assert worker.request("POST", "/admin/plans/pause-all", b"", token=None,
                          headers=session)[0] == 401
    # A browser without a session is shown the form; a program gets JSON.
    status, headers, page = worker.request("GET", "/lag", token=None,
                                           headers={"Accept": "text/html"})
    assert status == 401 and b"<form method=post action=/signin>" in page
    assert worker.request("GET", "/lag", token=None)[1]["Content-Type"].startswith(
        "application/json")
    # A wrong token signs nobody in; signing in never sends the browser to another site.
    status, headers, _ = worker.request(
        "POST", "/signin", b"token=wrong&next=/lag", token=None,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403 and "Set-Cookie" not in headers
    status, headers, _ = worker.request(
        "POST", "/signin", f"token={VIEW_TOKEN}&next=//evil.example.com/".encode(), token=None,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["Location"] == "/dashboard"
