"""Used, replenished and converted through the plan handlers (SPEC 13), on the in-memory
context: exposures from actions and holdout decisions, orders of the buyer, records once."""

from __future__ import annotations

from app.domain.model import OrderEvent, OrderLine, Refund
from app.domain.operations import HOLDOUT, variant_of
from tests.handlers.test_plan_handlers import T0, World, plan

WINDOW = 3_600_000
LINES = (OrderLine("i1", None, 1, 700), OrderLine("i2", None, 1, 300))


def order(world: World, order_id: str, event: str, ts_ms: int, buyer: str, *,
          shop: str = "s1", coupons: tuple[str, ...] = (), refund=None) -> None:
    world.ops.on_order(world.ctx, OrderEvent(
        order_id, event, ts_ms, buyer, shop, items=LINES if event in ("created", "paid")
        else (), coupon_ids=coupons, refund=Refund(*refund) if refund else None))


def outcomes(world: World) -> list[tuple[str, str, str | None]]:
    return sorted((r["kind"], r["buyer_id"], r["ref"]) for r in world.records()
                  if r["kind"] in ("used", "replenished", "converted"))


def started(holdout_bp: int = 0) -> tuple[World, dict[str, int]]:
    world = World(plan(holdout_bp=holdout_bp, conversion_window_ms=WINDOW))
    for n in range(20):
        world.member(f"b{n:02d}")
    world.tick()
    world.tick()
    exposed = {a["buyer_id"]: a["ts_ms"] for a in world.actions()}
    exposed |= {r["buyer_id"]: r["ts_ms"] for r in world.records("held_out")}
    return world, exposed


def test_the_first_paid_order_in_the_window_converts_once_whatever_came_first():
    world, exposed = started()
    at = exposed["b01"]
    order(world, "o-late", "paid", at + 50, "b01")
    order(world, "o-early", "paid", at + 10, "b01")   # read second, paid first: it wins
    order(world, "o-edge", "paid", at + WINDOW, "b02")
    order(world, "o-out", "paid", at + WINDOW + 1, "b03")
    order(world, "o-before", "paid", at, "b04")
    order(world, "o-shop", "paid", at + 10, "b05", shop="s2")
    world.tick()
    assert outcomes(world) == [("converted", "b01", "o-early"), ("converted", "b02", "o-edge")]
    order(world, "o-early", "paid", at + 10, "b01")   # again
    order(world, "o-more", "paid", at + 5, "b01")     # too late: recorded once
    world.tick()
    assert len(outcomes(world)) == 2
    progress = world.progress(f"p1@{T0}")
    assert progress.variants[""]["converted"] == 2
    assert progress.variants[""]["converted_amount"] == 2 * 1000


def test_a_granted_right_is_used_then_replenished_by_a_full_refund_not_a_partial_one():
    world, exposed = started()
    grant = f"p1@{T0}:b01"
    at = exposed["b01"]
    order(world, "o1", "created", at + 1, "b01", coupons=(grant,))
    order(world, "o1", "paid", at + 2, "b01")
    order(world, "o2", "paid", at + 3, "b02", coupons=(grant,))  # not b02's right
    world.tick()
    assert outcomes(world) == [("converted", "b01", "o1"), ("converted", "b02", "o2"),
                               ("used", "b01", "o1")]
    order(world, "o1", "refunded", at + 4, "b01", refund=("r1", "i1", 700))
    world.tick()
    assert ("replenished", "b01", "o1") not in outcomes(world)
    order(world, "o1", "refunded", at + 5, "b01", refund=("r2", "i2", 300))
    order(world, "o1", "refunded", at + 5, "b01", refund=("r2", "i2", 300))
    world.tick()
    assert outcomes(world).count(("replenished", "b01", "o1")) == 1


def test_a_closed_order_replenishes_and_holdout_buyers_convert_from_their_decision():
    world, exposed = started(holdout_bp=3000)
    held = [b for b in exposed if variant_of("p1", b, 3000, ()) == HOLDOUT]
    given = [b for b in exposed if b not in held]
    assert held and given
    for buyer in held:
        order(world, f"o-{buyer}", "paid", exposed[buyer] + 1, buyer)
    buyer = given[0]
    order(world, "o-g", "paid", exposed[buyer] + 1, buyer, coupons=(f"p1@{T0}:{buyer}",))
    order(world, "o-g", "closed", exposed[buyer] + 2, buyer)
    world.tick()
    expected = [("converted", b, f"o-{b}") for b in held] + [
        ("converted", buyer, "o-g"), ("replenished", buyer, "o-g"), ("used", buyer, "o-g")]
    assert outcomes(world) == sorted(expected)
    variants = world.progress(f"p1@{T0}").variants
    assert variants[HOLDOUT]["converted"] == len(held)
    assert variants[HOLDOUT]["held_out"] == len(held)
