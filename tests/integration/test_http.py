"""The HTTP side on a running worker and the real broker: admin, links, clicks, order center."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from shop_setup import cps_shop

PRODUCT = "https://shop.example.com/item/i1?ref=live"
LINK_BODY = {"channel_id": "ch", "promoter_id": "p1", "shop_id": "s1", "item_id": "i1",
             "url": PRODUCT, "group_leader_id": "g1"}


@pytest.fixture
def worker(make_worker):
    return make_worker(CPS_ATTRIBUTION_GRACE_MS="1000").start()


def test_admin_needs_the_token(worker):
    for method, path in (("PUT", "/admin/shops/s1"), ("DELETE", "/admin/shops/s1"),
                         ("POST", "/admin/links"), ("POST", "/admin/sinks/x/pause"),
                         ("PUT", "/admin/operators/op1"), ("DELETE", "/admin/operators/op1")):
        assert worker.request(method, path, {"shop_id": "s1"}, token=None)[0] == 401
        assert worker.request(method, path, {"shop_id": "s1"}, token="nope")[0] == 403


def test_invalid_bodies_are_refused_with_the_field(worker):
    cases = [
        ("/admin/shops/s1", {"shop_id": "s2"}, "shop_id"),
        ("/admin/channels/k", {"settle_days": "soon"}, "settle_days"),
        ("/admin/activities/a9", {"shop_id": "s1", "level": "shop_generic", "start_ms": 0},
         "rate_bp"),
        ("/admin/policy/default", {"product": [], "group_leader": []}, "product"),
        ("/admin/sinks/h", {"kind": "webhook", "url": "nope", "streams": ["commissions"]},
         "url"),
        ("/admin/operators/op1", {"shop_id": "s1", "daily_cap": 2, "total_cap": "many"},
         "total_cap"),
        ("/admin/plans/p1", {"shop_id": "s1", "audience": {"level_gte": 1},
                             "trigger": {"kind": "now"},
                             "action": {"kind": "assign", "sink": "crm",
                                        "payload": {"requires": ["vip", ""]}}},
         "action.payload.requires[1]"),
        ("/admin/nonsense/x", {}, None),
    ]
    for path, body, field in cases:
        status, answer = worker.admin("PUT", path, body)
        assert status == (404 if field is None else 400), (path, answer)
        assert answer.get("field") == field, (path, answer)
    status, _headers, _ = worker.request("PUT", "/admin/shops/s1", b"{not json",
                                         token="test-admin")
    assert status == 400
    huge = {"shop_id": "s1", "authorized_channels": ["x" * 100] * 1000}
    assert worker.admin("PUT", "/admin/shops/s1", huge)[0] == 413


def test_an_operator_is_written_to_cps_operators_and_deleted(worker, kafka):
    body = {"shop_id": "s1", "qualifications": ["vip"], "daily_cap": 5, "total_cap": 50}
    status, answer = worker.admin("PUT", "/admin/operators/op1", body)
    assert status == 200, answer
    assert (answer["topic"], answer["value"]) == (kafka.prefix + "operators",
                                                  {**body, "operator_id": "op1"})
    status, answer = worker.admin("DELETE", "/admin/operators/op1")
    assert (status, answer["deleted"]) == (200, True)

    records = kafka.read("operators", until=lambda found: len(found) >= 2, timeout=10)
    assert [(r["key"], r["value"]) for r in records] == [
        ("op1", {**body, "operator_id": "op1"}), ("op1", None)]


def test_link_click_redirect_attribution_and_order_center(worker, kafka, events):
    cps_shop(worker)
    status, link = worker.admin("POST", "/admin/links", LINK_BODY)
    assert status == 201 and set(link) >= {"token", "link", "expires_ms"}
    assert link["link"] == f"/c/{link['token']}"

    status, headers, _ = worker.request("GET", link["link"] + "?uid=u1")
    assert status == 302
    location = urlsplit(headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example.com",
                                                                 "/item/i1")
    query = parse_qs(location.query)
    assert query["ref"] == ["live"] and query["cps_t"]
    # The same buyer clicking again at once: same redirect, no second click.
    assert worker.request("GET", link["link"] + "?uid=u1")[1]["Location"] == headers["Location"]
    # A visitor without uid gets a first-party cookie naming them.
    status, cookie_headers, _ = worker.request("GET", link["link"])
    assert status == 302 and cookie_headers["Set-Cookie"].startswith("cps_uid=v-")
    assert "HttpOnly" in cookie_headers["Set-Cookie"]

    recorded = kafka.read("clicks", settle=2.0, until=lambda rs: len(rs) >= 2)
    assert len(recorded) == 2
    status, metrics = worker.get("/metrics")
    assert status == 200
    assert b'cps_clicks_total{outcome="recorded"} 2.0' in metrics
    assert b'cps_clicks_total{outcome="repeated"} 1.0' in metrics
    assert b"cps_click_spool_depth 0.0" in metrics
    click = next(r["value"] for r in recorded if r["key"] == "u1")
    assert (click["promoter_id"], click["shop_id"], click["group_leader_id"]) == ("p1", "s1", "g1")

    # An order carrying the tracking token (its buyer is someone else) is attributed by it.
    now = int(time.time() * 1000)
    tracking = query["cps_t"][0]
    kafka.produce("orders", [("o1", events.order("o1", "account-77", now, tracking=tracking)),
                             ("o1", events.order("o1", "account-77", now + 1, event="paid"))])
    results = kafka.read("attributions", until=lambda rs: len(rs) >= 1)
    assert (results[0]["value"]["mode"], results[0]["value"]["click_id"]) == (
        "tracking", click["click_id"])
    kafka.read("commissions", until=lambda rs: len(rs) >= 3)

    document = _json(worker, "/orders/o1?format=json")
    assert [step["event"] for step in document["timeline"]] == ["created", "paid"]
    assert document["status"] == "paid" and document["attribution"]["promoter_id"] == "p1"
    assert {(c["participant"], c["total"]) for c in document["commissions"]} == {
        ("youzan_platform", 129), ("channel_platform", 64), ("promoter", 1097)}
    assert {s["state"] for s in document["settlement"]} == {"frozen"}
    status, page = worker.get("/orders/o1")
    assert status == 200 and b"Commissions" in page and b"1097" in page
    assert worker.get("/orders/nope?format=json")[0] == 404

    clicks = _json(worker, "/clicks?buyer_id=u1&shop_id=s1&format=json")
    assert [c["click_id"] for c in clicks["clicks"]] == [click["click_id"]]
    assert worker.get("/clicks?format=json")[0] == 400


def test_promoter_orders_newest_first_with_a_cursor(worker, kafka, events):
    cps_shop(worker)
    now = int(time.time() * 1000)
    buyers = [f"b{i}" for i in range(7)]
    kafka.produce("clicks", [(b, events.click(f"c-{b}", b, now - 1000, promoter="p9"))
                             for b in buyers])
    kafka.produce("orders", [(f"o-{i}", events.order(f"o-{i}", b, now + i))
                             for i, b in enumerate(buyers)])
    kafka.read("attributions", until=lambda rs: len(rs) >= len(buyers))
    seen, cursor = [], None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = _json(worker, "/promoters/p9/orders?format=json&limit=3"
                     + (f"&cursor={cursor}" if cursor else ""))
        seen += [o["order_id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            if len(seen) == len(buyers):
                break
            seen, cursor = [], None  # the index is still being written; read again
            time.sleep(0.5)
    assert seen == [f"o-{i}" for i in reversed(range(len(buyers)))]
    forged = base64.urlsafe_b64encode(b"someone-else\x1f1").decode()
    assert worker.get(f"/promoters/p9/orders?cursor={forged}")[0] == 400
    assert worker.get("/promoters/p9/orders")[0] == 200


def test_a_request_to_any_worker_reaches_the_owner(make_worker, kafka, events):
    first = make_worker("a", CPS_ATTRIBUTION_GRACE_MS="1000").start()
    second = make_worker("b", CPS_ATTRIBUTION_GRACE_MS="1000").start()
    time.sleep(3)  # both in the group
    now = int(time.time() * 1000)
    orders = [f"o{i}" for i in range(12)]
    kafka.produce("orders", [(o, events.order(o, f"u-{o}", now)) for o in orders])
    kafka.read("attributions", until=lambda rs: len(rs) >= len(orders))
    time.sleep(1)
    for order_id in orders:
        for worker in (first, second):
            status, body = worker.get(f"/orders/{order_id}?format=json")
            assert status == 200, (order_id, body)
            assert orjson.loads(body)["order_id"] == order_id


def _json(worker, path: str) -> dict:
    status, body = worker.get(path)
    assert status == 200, (path, body)
    return orjson.loads(body)


def test_hostile_links_over_http_answer_their_status_and_record_nothing(worker, kafka):
    from app.domain.tokens import LINK, Signer

    status, link = worker.admin("POST", "/admin/links", LINK_BODY)
    token = link["token"]
    kid, body, sig = token.split(".")
    forged_body = base64.urlsafe_b64encode(orjson.dumps(
        {**orjson.loads(base64.urlsafe_b64decode(body + "==")),
         "u": "https://evil.example.com/"})).rstrip(b"=").decode()
    expired = Signer("test-secret").sign(LINK, {"h": "ch", "p": "p1", "s": "s1", "i": "i1",
                                               "u": PRODUCT, "x": 1})
    injected = Signer("test-secret").sign(LINK, {
        "h": "ch", "p": "p1", "s": "s1", "i": "i1", "x": 4102444800000,
        "u": "https://shop.example.com/\r\nSet-Cookie: session=stolen"})
    cases = [
        (f"{kid}.{forged_body}.{sig}", 403), (f"{kid}.{body}.{'A' * 22}", 403),
        (expired, 410), (token[:-6], 400), ("not%20base64!.x.y", 400), (injected, 400),
        ("Z" * 100_000, (400, 414)),
    ]
    for bad, expected in cases:
        status, headers, _ = worker.request("GET", f"/c/{bad}?uid=u-hostile")
        assert status in (expected if isinstance(expected, tuple) else (expected,)), (bad[:40],
                                                                                      status)
        assert "Location" not in headers
    # Redirect parameters in the request change nothing: only the signed URL is used.
    status, headers, _ = worker.request(
        "GET", f"/c/{token}?uid=u-ok&url=https://evil.example.com&next=//evil.example.com")
    assert status == 302 and headers["Location"].startswith("https://shop.example.com/item/i1?")
    records = kafka.read("clicks", settle=2.0, until=lambda rs: len(rs) >= 1)
    assert [r["key"] for r in records] == ["u-ok"]
