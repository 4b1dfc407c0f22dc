"""`cps link`: make a signed promotion link."""

from __future__ import annotations

import time

import click

from app.cli.signing import echo_signed
from app.config.settings import Settings, SettingsError
from app.domain.tokens import Signer
from app.services.admin import issue_link


@click.command("link")
@click.option("--channel", "channel_id", required=True, help="Channel id, e.g. kuaishou.")
@click.option("--promoter", "promoter_id", required=True)
@click.option("--shop", "shop_id", required=True)
@click.option("--item", "item_id", required=True)
@click.option("--url", required=True, help="Product page the link redirects to (http/https).")
@click.option("--activity", "activity_id", default=None)
@click.option("--group-leader", "group_leader_id", default=None)
@click.option("--base", "base_id", default=None)
@click.option("--ttl-s", type=int, default=None, help="Lifetime (default CPS_LINK_TTL_S).")
@click.option("--json", "as_json", is_flag=True, help="Print the token, link and expiry as JSON.")
@click.pass_obj
def command(settings: Settings, ttl_s: int | None, as_json: bool, **fields: str | None) -> None:
    """Sign a promotion link with CPS_LINK_SECRET; the last line is its URL (CPS_PUBLIC_URL)."""
    if not settings.link_secret:
        raise SettingsError("CPS_LINK_SECRET must be set to sign links")
    body = {name: value for name, value in fields.items() if value is not None}
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    echo_signed("link", lambda: issue_link(
        Signer(settings.link_secret), body, now_ms=int(time.time() * 1000),
        default_ttl_s=settings.link_ttl_s, public_url=settings.public_url),
        shown_last="url", as_json=as_json)
