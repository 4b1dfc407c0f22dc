"""The click service: genuine links redirect and record; hostile ones do neither."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from app.domain.links import LinkError, link_payload, promotion_from_request, redirect_url
from app.domain.tokens import LINK, TRACKING, Signer, click_from_tracking
from app.services.clicks import ClickService
from app.services.spool import ClickSpool

NOW = 1_700_000_000_000
signer = Signer("secret")
REQUEST = {"channel_id": "kuaishou", "promoter_id": "p1", "shop_id": "s1", "item_id": "i1",
           "url": "https://shop.example.com/item/i1?color=red#top", "group_leader_id": "g1"}


def make_token(request=REQUEST, *, expires_ms=NOW + 60_000, raw_payload=None) -> str:
    if raw_payload is not None:
        return signer.sign(LINK, raw_payload)
    return signer.sign(LINK, link_payload(promotion_from_request(request),
                                          expires_ms=expires_ms))


@pytest.fixture
def service(tmp_path):
    return ClickService(signer, ClickSpool(tmp_path), dedupe_ms=10_000, tracking_ttl_ms=DAY)


DAY = 86_400_000


def click(service, token, *, uid=None, cookie=None, now=NOW):
    return asyncio.run(service.click(token, uid=uid, cookie=cookie, now_ms=now))


def spooled(service) -> list[dict]:
    return [orjson.loads(line) for _seq, line in service.spool.read_after(0, 100)]


def test_genuine_link_redirects_to_the_signed_url_with_a_tracking_token(service):
    outcome = click(service, make_token(), uid="buyer-1")
    assert outcome.status == 302 and outcome.new_buyer_cookie is None
    parts = urlsplit(outcome.location)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == (
        "https", "shop.example.com", "/item/i1", "top")
    query = parse_qs(parts.query)
    assert query["color"] == ["red"]
    tracked = click_from_tracking(signer.verify(TRACKING, query["cps_t"][0], now_ms=NOW))
    [recorded] = spooled(service)
    assert recorded["click_id"] == tracked.click_id == outcome.click_id
    assert (recorded["buyer_id"], recorded["shop_id"], recorded["promoter_id"],
            recorded["group_leader_id"], recorded["ts_ms"]) == ("buyer-1", "s1", "p1", "g1", NOW)


def test_buyer_from_cookie_or_a_new_cookie(service):
    assert click(service, make_token(), cookie="v-abc").new_buyer_cookie is None
    assert spooled(service)[0]["buyer_id"] == "v-abc"
    outcome = click(service, make_token(), cookie="bad cookie value")
    assert outcome.new_buyer_cookie.startswith("v-")
    assert spooled(service)[1]["buyer_id"] == outcome.new_buyer_cookie


def _swap_part(token: str, index: int, text: str) -> str:
    parts = token.split(".")
    parts[index] = text
    return ".".join(parts)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(("make", "status"), [
    (lambda: _swap_part(make_token(), 1, _b64(orjson.dumps(
        {**orjson.loads(base64.urlsafe_b64decode(make_token().split(".")[1] + "==")),
         "u": "https://evil.example.com/"}))), 403),                     # tampered payload
    (lambda: _swap_part(make_token(), 2, _b64(b"\x00" * 16)), 403),      # tampered signature
    (lambda: Signer("other").sign(LINK, {"x": NOW + 1}), 403),           # another secret
    (lambda: make_token(expires_ms=NOW), 410),                           # expired
    (lambda: make_token()[:-5], 400),                                    # truncated
    (lambda: "not!base64.at@all.%%", 400),                               # not base64
    (lambda: "A" * 100_000, 400),                                        # 100 KB
    (lambda: make_token(raw_payload={"u": "https://x.example.com/\r\nSet-Cookie: a=b",
                                     "h": "c", "p": "p", "s": "s", "i": "i",
                                     "x": NOW + 1}), 400),               # header injection
    (lambda: make_token(raw_payload={"u": "javascript:alert(1)", "h": "c", "p": "p", "s": "s",
                                     "i": "i", "x": NOW + 1}), 400),
    (lambda: signer.sign(TRACKING, {"x": NOW + 1}), 403),                # a tracking token
])
def test_bad_tokens_answer_their_status_and_record_nothing(service, make, status):
    outcome = click(service, make(), uid="buyer-1")
    assert (outcome.status, outcome.location) == (status, None)
    assert spooled(service) == []


def test_a_bad_uid_is_refused(service):
    assert click(service, make_token(), uid="x" * 200).status == 400
    assert click(service, make_token(), uid="a\r\nb").status == 400
    assert spooled(service) == []


def test_repeated_clicks_within_the_interval_count_once(service):
    token = make_token()
    first = click(service, token, uid="u1")
    again = click(service, token, uid="u1", now=NOW + 5000)
    later = click(service, token, uid="u1", now=NOW + 10_000)
    assert again.location == first.location and again.click_id == first.click_id
    assert later.click_id != first.click_id
    assert click(service, token, uid="u2", now=NOW + 1).click_id != first.click_id
    assert len(spooled(service)) == 3


@pytest.mark.parametrize("url", [
    "ftp://example.com/", "//evil.example.com/x", "https://user:pw@example.com/",
    "https://example.com/a b", "https://exa\\mple.com/", "http:///nohost", "x" * 3000,
    "https://example.com/\nLocation: https://evil.example.com/",
])
def test_links_refuse_urls_a_redirect_must_not_go_to(url):
    with pytest.raises(LinkError, match="url"):
        promotion_from_request({**REQUEST, "url": url})


def test_redirect_replaces_an_existing_tracking_parameter():
    assert redirect_url("https://a.example.com/p?cps_t=old&x=1", "new") == (
        "https://a.example.com/p?x=1&cps_t=new")
