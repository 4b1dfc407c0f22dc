"""Who may call which route: every route of the web app has a rule, README shows the table,
and the gate's decisions for each kind of reader (SPEC 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from app.bootstrap import build
from app.cli import main
from app.config.settings import SETTINGS, Settings
from app.domain.tokens import LINK, PROMOTER, Signer
from app.services.admin import AdminError, issue_promoter_token
from app.web.access import (
    ADMIN,
    PROMOTER_READER,
    ROUTES,
    VIEWER,
    Audience,
    Gate,
    Reader,
    Refusal,
    markdown_table,
    order_for_promoter,
)

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000_000
SIGNER = Signer("link-secret")


def gate(*, metrics_token: str = "", view_token: str = "view-tok") -> Gate:
    return Gate(admin_token="admin-tok", view_token=view_token, metrics_token=metrics_token,
                signer=SIGNER, session_ttl_s=3600)


def promoter_token(promoter_id: str, ttl_s: int = 60, signer: Signer = SIGNER) -> str:
    return issue_promoter_token(signer, {"promoter_id": promoter_id, "ttl_s": ttl_s},
                                now_ms=NOW)["token"]


def admit(path: str, header: str | None = None, *, session: str | None = None,
          params: dict | None = None, query: dict | None = None, at: int = NOW,
          door: Gate | None = None) -> Reader | None:
    return (door or gate()).admit(ROUTES[path], authorization=header, session=session,
                                  params=params or {}, query=query or {}, now_ms=at)


def refused(path: str, header: str | None = None, **kwargs) -> int:
    with pytest.raises(Refusal) as info:
        admit(path, header, **kwargs)
    return info.value.status


def test_every_route_of_the_web_app_has_a_rule_and_every_rule_a_route(tmp_path):
    services = build(Settings.from_env({
        "CPS_ADMIN_TOKEN": "a", "CPS_LINK_SECRET": "b", "CPS_VIEW_TOKEN": "c",
        "CPS_DATA_DIR": str(tmp_path)}))
    served = {route.resource.canonical
              for route in services.app.web.web_app.router.routes()}
    assert served - set(ROUTES) == set(), "routes without an access rule"
    assert set(ROUTES) - served == set(), "rules of routes no longer served"


def test_readme_shows_the_routes_table():
    # On a difference: paste `python -c "from app.web.access import markdown_table as t;
    # print(t(), end='')"` into README.md.
    assert markdown_table() in (ROOT / "README.md").read_text()


def test_only_the_spec_public_routes_are_open():
    open_to_anyone = {path for path, rule in ROUTES.items()
                      if rule.audience in (Audience.ANYONE, Audience.METRICS)}
    assert open_to_anyone == {"/c/{token}", "/health", "/ready", "/metrics", "/signin",
                              "/signout", "/demo/product", "/static/{name}"}


@pytest.mark.parametrize("header", [None, ""])
def test_no_token_is_401_on_every_guarded_route(header):
    for path, rule in ROUTES.items():
        if rule.audience not in (Audience.ANYONE, Audience.METRICS):
            assert refused(path, header, params={"promoter_id": "p1"}) == 401, path


@pytest.mark.parametrize("header", ["Basic dmlldy10b2s=", "Bearer", "Bearer   ", "view-tok"])
def test_a_header_that_is_no_bearer_token_is_401(header):
    assert refused("/lag", header) == 401


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer view-tokX", "Bearer admin-to",
                                    "Bearer " + promoter_token("p1", signer=Signer("other")),
                                    "Bearer " + SIGNER.sign(LINK, {"p": "p1", "x": NOW + 1})])
def test_a_wrong_token_is_403_on_readers_and_admin_routes(header):
    assert refused("/lag", header) == 403
    assert refused("/admin/{kind}/{ident}", header) == 403


def test_the_view_and_admin_tokens_read_everything_and_only_admin_writes():
    for path, rule in ROUTES.items():
        if rule.audience in (Audience.READERS, Audience.PROMOTERS):
            assert admit(path, "Bearer view-tok") == Reader(VIEWER)
            assert admit(path, "bearer admin-tok") == Reader(ADMIN)
        if rule.audience is Audience.ADMIN:
            assert admit(path, "Bearer admin-tok") == Reader(ADMIN)
            assert refused(path, "Bearer view-tok") == 403


def test_a_promoter_token_reads_its_own_and_nothing_else():
    mine = "Bearer " + promoter_token("p1")
    assert admit("/promoters/{promoter_id}/orders", mine,
                 params={"promoter_id": "p1"}).promoter_id == "p1"
    assert admit("/accounts/{account_id}", mine, params={"account_id": "p1"}).is_promoter
    assert admit("/subscribe", mine, query={"stream": "commissions", "promoter_id": "p1"})
    assert admit("/orders/{order_id}", mine, params={"order_id": "o1"}).is_promoter
    assert refused("/promoters/{promoter_id}/orders", mine, params={"promoter_id": "p2"}) == 403
    assert refused("/accounts/{account_id}", mine, params={"account_id": "p2"}) == 403
    assert refused("/subscribe", mine, query={"stream": "commissions"}) == 403
    assert refused("/subscribe", mine, query={"promoter_id": "p2"}) == 403
    for path, rule in ROUTES.items():
        if rule.audience in (Audience.READERS, Audience.ADMIN):
            assert refused(path, mine, params={"promoter_id": "p1"}) == 403, path


def test_an_expired_promoter_token_is_403():
    token = "Bearer " + promoter_token("p1", ttl_s=60)
    assert admit("/accounts/{account_id}", token, params={"account_id": "p1"}, at=NOW + 59_999)
    assert refused("/accounts/{account_id}", token, params={"account_id": "p1"},
                   at=NOW + 60_000) == 403


def test_metrics_are_open_unless_their_token_is_set():
    assert admit("/metrics") is None
    door = gate(metrics_token="prom-tok")
    assert admit("/metrics", "Bearer prom-tok", door=door) is None
    assert refused("/metrics", door=door) == 401
    assert refused("/metrics", "Bearer view-tok", door=door) == 403


def test_a_session_reads_like_its_token_until_it_expires_but_never_administers():
    door = gate()
    for token, reader in (("view-tok", Reader(VIEWER)), ("admin-tok", Reader(VIEWER))):
        session, max_age = door.session_for(door.reader_of(token, NOW), NOW)
        assert max_age == 3600
        assert admit("/lag", session=session, door=door) == reader
        assert refused("/lag", session=session, at=NOW + 3_600_000, door=door) == 401
        assert refused("/admin/links", session=session, door=door) == 401
    # A header wins over the cookie: a wrong token is refused even with a good session.
    assert refused("/lag", "Bearer wrong", session=session, door=door) == 403


def test_a_promoters_session_ends_with_its_token_and_keeps_its_scope():
    door = gate()
    reader = door.reader_of(promoter_token("p1", ttl_s=600), NOW)
    session, max_age = door.session_for(reader, NOW)
    assert max_age == 600
    assert admit("/accounts/{account_id}", session=session, params={"account_id": "p1"},
                 door=door).promoter_id == "p1"
    assert refused("/accounts/{account_id}", session=session, params={"account_id": "p2"},
                   door=door) == 403
    assert refused("/lag", session=session, door=door) == 403


def test_changing_the_view_token_ends_the_viewers_sessions():
    session, _ = gate().session_for(Reader(VIEWER), NOW)
    assert refused("/lag", session=session, door=gate(view_token="new-view-tok")) == 401


@given(st.text(max_size=300))
def test_any_cookie_that_is_no_session_reads_nothing(cookie):
    assert refused("/lag", session=cookie) == 401


def test_a_promoter_token_is_not_a_session_and_a_session_is_no_token():
    door = gate()
    token = promoter_token("p1")
    assert refused("/accounts/{account_id}", session=token, params={"account_id": "p1"}) == 401
    session, _ = door.session_for(Reader(VIEWER), NOW)
    assert refused("/lag", "Bearer " + session, door=door) == 403


@pytest.mark.parametrize(("body", "field"), [
    ({}, "promoter_id"), ({"promoter_id": ""}, "promoter_id"), ({"promoter_id": 7}, "promoter_id"),
    ({"promoter_id": "p", "ttl_s": 0}, "ttl_s"), ({"promoter_id": "p", "ttl_s": "1"}, "ttl_s"),
    ({"promoter_id": "p", "ttl_s": 366 * 86_400 + 1}, "ttl_s"),
])
def test_promoter_token_requests_name_the_field_at_fault(body, field):
    with pytest.raises(AdminError) as info:
        issue_promoter_token(SIGNER, body, now_ms=NOW)
    assert (info.value.status, info.value.field) == (400, field)


def test_a_promoter_token_carries_its_promoter_and_expiry():
    issued = issue_promoter_token(SIGNER, {"promoter_id": "p9", "ttl_s": 90}, now_ms=NOW)
    assert issued["expires_ms"] == NOW + 90_000
    assert SIGNER.verify(PROMOTER, issued["token"], now_ms=NOW) == {"p": "p9",
                                                                    "x": NOW + 90_000}
    assert gate().reader_of(issued["token"], NOW) == Reader(PROMOTER_READER, "p9", NOW + 90_000)


ORDER = {
    "order_id": "o1", "attribution": {"promoter_id": "p1", "group_leader_id": "g1"},
    "commissions": [{"participant": "promoter", "account_id": "p1", "total": 70},
                    {"participant": "group_leader", "account_id": "g1", "total": 30}],
    "settlement": [{"participant": "promoter", "account_id": "p1", "amount": 70},
                   {"participant": "group_leader", "account_id": "g1", "amount": 30}],
}


def test_a_promoter_reads_its_orders_with_only_its_own_money():
    assert order_for_promoter(ORDER, "p1")["commissions"] == [ORDER["commissions"][0]]
    assert order_for_promoter(ORDER, "p1")["settlement"] == [ORDER["settlement"][0]]
    leader = order_for_promoter(ORDER, "g1")
    assert [row["total"] for row in leader["commissions"]] == [30]
    assert order_for_promoter(ORDER, "p2") is None
    assert order_for_promoter({"order_id": "o2", "attribution": None, "commissions": [],
                               "settlement": []}, "p1") is None


def test_cps_promoter_token_signs_with_the_link_secret(monkeypatch):
    for declared in SETTINGS:
        monkeypatch.delenv(declared.name, raising=False)
    result = CliRunner().invoke(main, ["promoter-token", "p7", "--ttl-s", "120"],
                                env={"CPS_LINK_SECRET": "link-secret"})
    assert result.exit_code == 0, result.output
    expires_line, token = result.output.splitlines()
    expires_ms = int(expires_line.removeprefix("expires_ms="))
    assert SIGNER.verify(PROMOTER, token, now_ms=expires_ms - 1) == {"p": "p7", "x": expires_ms}
    refused = CliRunner().invoke(main, ["promoter-token", "p7", "--ttl-s", "0"],
                                 env={"CPS_LINK_SECRET": "link-secret"})
    assert refused.exit_code == 2 and "ttl_s" in refused.output
    unsigned = CliRunner().invoke(main, ["promoter-token", "p7"])
    assert unsigned.exit_code == 2 and "CPS_LINK_SECRET" in unsigned.output
