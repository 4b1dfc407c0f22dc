"""The benchmark's workload: deterministic, shaped like a live stream, valid for the engine."""

from __future__ import annotations

from collections import Counter

import orjson

from app.bench.step import AttributionStep
from app.bench.workload import Shape, Workload
from app.records.inputs import decode_click, decode_order

START = 1_790_000_000_000


def _events(shape: Shape) -> list[tuple[str, str, bytes]]:
    return list(Workload(shape, start_ms=START).events())


def test_same_seed_same_bytes():
    shape = Shape(events=3000, buyers=500)
    assert _events(shape) == _events(shape)
    assert _events(shape) != _events(Shape(events=3000, buyers=500, seed=2))


def test_mix_keys_and_validity():
    shape = Shape(events=20_000, buyers=5_000)
    workload = Workload(shape, start_ms=START)
    events = list(workload.events())
    topics = Counter(topic for topic, _key, _value in events)
    assert len(events) == shape.events
    assert 0.65 < topics["clicks"] / shape.events < 0.75
    for topic, key, value in events:
        if topic == "clicks":
            assert decode_click(value).buyer_id == key  # clicks keyed by buyer
        else:
            assert decode_order(value).order_id == key  # orders keyed by order id
    buyers = {key for topic, key, _ in events if topic == "clicks"}
    assert len(buyers) > 3_000


def test_shops_are_skewed_and_the_burst_is_faster():
    shape = Shape(events=20_000, buyers=5_000)
    clicks = [orjson.loads(v) for t, _k, v in _events(shape) if t == "clicks"]
    shops = Counter(c["shop_id"] for c in clicks).most_common()
    assert shops[0][1] > 10 * shops[len(shops) // 2][1]
    times = [c["ts_ms"] for c in clicks]
    quarter = len(times) // 4
    normal = times[quarter // 2] - times[0]
    burst = times[len(times) // 2 + quarter // 2] - times[len(times) // 2]
    assert burst * 4 < normal


def test_most_orders_follow_a_click_and_are_attributed():
    shape = Shape(events=20_000, buyers=5_000)
    workload = Workload(shape, start_ms=START)
    configuration = list(workload.configuration())
    step = AttributionStep(configuration)
    histories: dict[str, list] = {}
    decided: dict[str, str] = {}
    for topic, key, value in workload.events():
        if topic == "clicks":
            buyer, history = step.add_click(histories.get(key), value, START + 7_200_000)
            if history is not None:
                histories[buyer] = history
        else:
            order_id, buyer = step.order_keys(value)
            if order_id not in decided:
                _, record = step.attribute(histories.get(buyer), value, START + 7_200_000)
                decided[order_id] = orjson.loads(record)["type"]
    types = Counter(decided.values())
    assert types["cps"] > 0.7 * len(decided)
    assert types["none"] > 0  # buyers without a click, shops outside CPS
    assert {topic for topic, _k, _v in configuration} == {"channels", "shops", "activities"}
