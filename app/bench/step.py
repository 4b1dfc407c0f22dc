"""The attribution every benchmarked implementation runs: the engine's own rules and codecs.

The limit, the peer and the naive Faust version call this, so the
benchmark compares how each moves events and state, not different rules.
It covers what the engine does for an order whose `created` comes after
its buyer's click: decode, add the click to the buyer's history, decide on
the order's first event, encode the attribution. Later events of an
attributed order change nothing (the caller keeps the `attributed` marker).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from app.domain import clicks as click_history
from app.domain.attribution import conclude, decide
from app.domain.model import Channel
from app.records.configuration import decode_channel, decode_shop
from app.records.inputs import decode_click, decode_order
from app.records.outputs import encode_attribution

DAY_MS = 86_400_000


class AttributionStep:
    def __init__(self, configuration: Iterable[tuple[str, str, dict]], *,
                 retention_ms: int = 30 * DAY_MS, cap: int = 100) -> None:
        self.shops = {}
        self.channels = {}
        for topic, key, value in configuration:
            raw = orjson.dumps(value)
            if topic == "shops":
                self.shops[key] = decode_shop(raw, key.encode())
            elif topic == "channels":
                self.channels[key] = decode_channel(raw, key.encode())
        self.retention_ms = retention_ms
        self.cap = cap

    def channel(self, channel_id: str) -> Channel:
        found = self.channels.get(channel_id)
        return found if found is not None else Channel.unconfigured(channel_id)

    @staticmethod
    def order_keys(value: bytes) -> tuple[str, str]:
        """(order_id, buyer_id) of an order event; raises InvalidEvent for a bad one."""
        event = decode_order(value)
        return event.order_id, event.buyer_id

    def add_click(self, history: list | None, value: bytes,
                  now_ms: int) -> tuple[str, list | None]:
        """(buyer_id, the new history) or (buyer_id, None) when the click changes nothing."""
        click = decode_click(value)
        updated = click_history.add_click(
            history or [], click_history.to_row(click), now_ms=now_ms,
            retention_ms=self.retention_ms, cap=self.cap)
        return click.buyer_id, updated

    def attribute(self, history: list | None, value: bytes, now_ms: int) -> tuple[str, bytes]:
        """(order_id, the attribution record) decided from the buyer's history."""
        facts = decode_order(value).facts()
        decision = decide(facts, history or [], self.shops.get(facts.shop_id), self.channel)
        result = conclude(facts, decision, attributed_ms=now_ms, delayed=False)
        return facts.order_id, encode_attribution(result)
