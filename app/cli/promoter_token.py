"""`cps promoter-token`: make a promoter's read-only token."""

from __future__ import annotations

import time

import click

from app.cli.signing import echo_signed
from app.config.settings import Settings, SettingsError
from app.domain.tokens import Signer
from app.services.admin import DEFAULT_PROMOTER_TOKEN_TTL_S, issue_promoter_token


@click.command("promoter-token")
@click.argument("promoter_id")
@click.option("--ttl-s", type=int, default=DEFAULT_PROMOTER_TOKEN_TTL_S, show_default=True,
              help="Lifetime in seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the token and expiry as JSON.")
@click.pass_obj
def command(settings: Settings, promoter_id: str, ttl_s: int, as_json: bool) -> None:
    """Sign a read-only token for PROMOTER_ID with CPS_LINK_SECRET; the last line is the token.

    It reads only /promoters/PROMOTER_ID/orders, /accounts/PROMOTER_ID, the orders
    attributed to it or paying it, and /subscribe with promoter_id=PROMOTER_ID, until it
    expires (`Authorization: Bearer <token>`, or signing in at /signin). Changing
    CPS_LINK_SECRET (without listing the old one in CPS_LINK_SECRETS_PREVIOUS) revokes
    every such token.
    """
    if not settings.link_secret:
        raise SettingsError("CPS_LINK_SECRET must be set to sign promoter tokens")
    echo_signed("promoter-token", lambda: issue_promoter_token(
        Signer(settings.link_secret, previous=settings.link_secrets_previous),
        {"promoter_id": promoter_id, "ttl_s": ttl_s}, now_ms=int(time.time() * 1000)),
        shown_last="token", as_json=as_json)
