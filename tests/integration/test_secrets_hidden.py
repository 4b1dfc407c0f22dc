"""No view, answer or log shows a secret (SPEC 8, issue 34).

One worker runs with a marker in every secret setting it can take (the SASL password
needs a SASL broker: tests/test_settings.py and tests/test_connection.py check what
could show it); every configuration object that can hold a secret is written with
markers in it (a sink's secret, the user, password, path, query and fragment of
webhook URLs); a promoter token and a sign-in session are made; sinks fail, retry and
dead-letter, a plan's actions fail. Then every reader's view in app.web.access.ROUTES
(as HTML and JSON), /subscribe, /metrics, the admin API's answers, the worker's log and
the sinks' dead letters are searched for each marker.
"""

from __future__ import annotations

import time
import uuid

import orjson
from conftest import free_port
from plan_setup import members, wait_loaded
from sse_client import SSEClient
from waiting import until

from app.domain.model import DAY_MS
from app.web.access import ROUTES, SESSION_COOKIE, Audience

TAG = uuid.uuid4().hex[:8]
SETTINGS = {"CPS_ADMIN_TOKEN": f"admin-{TAG}", "CPS_VIEW_TOKEN": f"view-{TAG}",
            "CPS_METRICS_TOKEN": f"metrics-{TAG}", "CPS_LINK_SECRET": f"link-{TAG}",
            "CPS_LINK_SECRETS_PREVIOUS": f"old1-{TAG},old2-{TAG}"}
VIEW, METRICS = SETTINGS["CPS_VIEW_TOKEN"], SETTINGS["CPS_METRICS_TOKEN"]
CONFIGURED = {"sink secret": f"sinksecret-{TAG}", "URL user": f"user-{TAG}",
              "URL password": f"password-{TAG}", "URL path": f"path-{TAG}",
              "URL query": f"query-{TAG}", "URL fragment": f"fragment-{TAG}",
              **{name: value for name, value in SETTINGS.items()
                 if name != "CPS_LINK_SECRETS_PREVIOUS"},
              **{f"CPS_LINK_SECRETS_PREVIOUS[{n}]": value for n, value in enumerate(
                  SETTINGS["CPS_LINK_SECRETS_PREVIOUS"].split(","))}}
PLAN_BUYER = "m00001"  # level 1: selected by the plan's audience (level >= 1)
PARAMS = {"plan_id": "p1", "buyer_id": PLAN_BUYER, "operator_id": "op1", "order_id": "o1",
          "promoter_id": "p1", "account_id": "p1"}
QUERIES = {"/clicks": "buyer_id=u1&shop_id=s1"}
STREAMED = ("attributions", "commissions")  # read from /subscribe while the order goes on


def url_with_secrets(port: int) -> str:
    return (f"http://{CONFIGURED['URL user']}:{CONFIGURED['URL password']}@127.0.0.1:{port}"
            f"/hook/{CONFIGURED['URL path']}?access_token={CONFIGURED['URL query']}"
            f"#{CONFIGURED['URL fragment']}")


def test_no_view_answer_log_or_dead_letter_shows_a_secret(make_worker, kafka, events):
    dead_port = free_port()  # nothing listens there: every delivery fails and is retried
    # At debug level, the most its log says.
    worker = make_worker(CPS_ATTRIBUTION_GRACE_MS="1000", CPS_MONITOR_INTERVAL_S="1",
                         CPS_LOG_LEVEL="debug", **SETTINGS).start()
    answers: dict[str, bytes] = {}

    def admin(method: str, path: str, body: object, expected: int = 200) -> dict:
        status, answer = worker.admin(method, path, body)
        assert status == expected, (path, answer)
        answers[f"{method} {path}"] = orjson.dumps(answer)
        return answer

    now = int(time.time() * 1000)
    retry_fast = {"max_attempts": 2, "base_ms": 10, "max_ms": 20}
    admin("PUT", "/admin/shops/s1", {"cps_joined_ms": now - DAY_MS, "authorized_channels": []})
    admin("PUT", "/admin/channels/ch", {"attribution_window_ms": DAY_MS,
                                        "webhook_url": url_with_secrets(99999)})
    admin("PUT", "/admin/activities/a1", {"shop_id": "s1", "level": "shop_generic",
                                          "rate_bp": 1000, "start_ms": 0})
    admin("PUT", "/admin/policy/ch", {"product": [{"participant": "promoter", "rest": True}],
                                      "group_leader": [{"participant": "group_leader",
                                                        "rest": True}]})
    hook = admin("PUT", "/admin/sinks/hook", {
        "kind": "webhook", "url": url_with_secrets(dead_port), "secret": CONFIGURED["sink secret"],
        "streams": ["attributions", "commissions", "order_status"], "retry": retry_fast})
    # A port no client reaches: the client's own refusal names the URL.
    admin("PUT", "/admin/sinks/badport", {
        "kind": "webhook", "url": url_with_secrets(99999), "secret": CONFIGURED["sink secret"],
        "streams": ["settlements"], "retry": retry_fast})
    admin("PUT", "/admin/sinks/out", {"kind": "kafka", "topic": kafka.prefix + "out",
                                      "streams": ["commissions"]})
    admin("PUT", "/admin/sinks/refused", {"kind": "webhook",
                                          "url": url_with_secrets(1).replace("http", "ftp", 1),
                                          "secret": CONFIGURED["sink secret"],
                                          "streams": ["commissions"]}, expected=400)
    admin("PUT", "/admin/operators/op1", {"shop_id": "s1", "daily_cap": 5, "total_cap": 50})

    members(kafka, 5)
    wait_loaded(worker)
    admin("PUT", "/admin/plans/p1", {
        "shop_id": "s1", "name": "coupon", "audience": {"level_gte": 1},
        "trigger": {"kind": "now"}, "action": {"kind": "grant", "sink": "badport",
                                              "payload": {"coupon": "c-5"}}})
    made = {"promoter token": admin("POST", "/admin/promoter-tokens",
                                    {"promoter_id": "p1"}, expected=201)["token"]}
    link = admin("POST", "/admin/links", {"channel_id": "ch", "promoter_id": "p1",
                                          "shop_id": "s1", "item_id": "i1",
                                          "url": "https://shop.example.com/i1"}, expected=201)
    status, headers, _ = worker.request("POST", "/signin", f"token={VIEW}&next=/sinks".encode(),
                                        token=None, headers={
                                            "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303, headers
    made["session cookie"] = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]

    subscribers = [SSEClient(worker.port, f"/subscribe?stream={stream}", token=VIEW)
                   for stream in STREAMED]
    assert worker.request("GET", link["link"] + "?uid=u1", token=None)[0] == 302
    ordered = int(time.time() * 1000)  # in channel ch: its status changes go to its webhook
    kafka.produce("orders", [("o1", events.order("o1", "u1", ordered, channel_id="ch")),
                             ("o1", events.order("o1", "u1", ordered + 1, event="paid",
                                                 channel_id="ch"))])
    assert kafka.read("commissions", until=lambda records: len(records) >= 1)
    failed = until(lambda: _failed_everywhere(worker), 30)
    assert failed, "no sink failed, or no plan action"
    letters = kafka.read("sinks.deadletter", until=lambda records: {"hook", "badport"} <= {
        r["value"]["sink_id"] for r in records})
    assert [subscriber.status for subscriber in subscribers] == [200] * len(STREAMED)

    seen = _views(worker)
    seen["view /dashboard by the session"] = worker.request(
        "GET", "/dashboard", token=None, headers={"Cookie": f"{SESSION_COOKIE}="
                                                  f"{made['session cookie']}"})[2]
    seen["view /promoters/p1/orders by the promoter"] = worker.request(
        "GET", "/promoters/p1/orders?format=json", token=made["promoter token"])[2]
    seen["sinks' dead letters"] = b"\n".join(record["raw"] for record in letters)
    worker.kill()  # its log is complete: nothing is buffered (and a stop takes 7 s)
    seen |= {f"worker log {log.name}": log.read_bytes() for log in worker.logs}
    for stream, subscriber in zip(STREAMED, subscribers, strict=True):
        subscriber.close()  # at once now that the worker is gone (else at its next heartbeat)
        seen[f"/subscribe?stream={stream}"] = repr(subscriber.events).encode()

    assert b"[DEBUG]" in seen["worker log w1-0.log"]
    assert {record["value"]["sink_id"] for record in letters} >= {"hook", "badport"}
    assert all(subscriber.events for subscriber in subscribers)
    # The promoter token's own answer carries it: the admin API that made it.
    assert _found(answers, CONFIGURED) + _found(seen, CONFIGURED | made) == []
    assert failed["hook"]["target"] == f"http://127.0.0.1:{dead_port}"
    assert (hook["value"]["url"], hook["value"]["secret"]) == (
        f"http://127.0.0.1:{dead_port}", "(set)")


def _found(texts: dict[str, bytes], markers: dict[str, str]) -> list[tuple[str, str]]:
    """(where, which secret) of each marker found in a text."""
    return [(where, secret) for where, text in texts.items()
            for secret, marker in markers.items() if marker.encode() in text]


def _failed_everywhere(worker) -> dict | None:
    """The sinks' figures once every webhook sink has an error, `hook` and `badport` have
    dead letters, and the plan's action is recorded as failed; else None."""
    sinks = orjson.loads(worker.get("/sinks?format=json")[1])["sinks"]
    records = worker.get(f"/members/{PLAN_BUYER}/records?format=json")[1]
    webhooks = ("hook", "badport", "channel-ch")
    if (all(sinks.get(name, {}).get("last_error") for name in webhooks)
            and all(sinks[name]["dead_lettered"] for name in ("hook", "badport"))
            and b'"failed"' in records):
        return sinks
    return None


def _views(worker) -> dict[str, bytes]:
    """Every reader's view (ROUTES) as HTML and as JSON, and /metrics, by what they are."""
    seen = {}
    for path, rule in ROUTES.items():
        if rule.audience not in (Audience.READERS, Audience.PROMOTERS, Audience.METRICS):
            continue
        if path == "/subscribe":
            continue  # a stream: read while the order went on
        query = QUERIES.get(path, "")
        token = METRICS if rule.audience is Audience.METRICS else VIEW
        for shape in ("html", "json"):
            full = path.format(**PARAMS) + "?" + "&".join(
                part for part in (query, "format=json" if shape == "json" else "") if part)
            status, _headers, body = worker.request("GET", full, token=token,
                                                    headers={"Accept": "text/html"})
            assert status == 200, (full, status, body[:300])
            seen[f"view {full}"] = body
    return seen
