"""Live subscriptions (Server-Sent Events) with a real client."""

from __future__ import annotations

import socket
import time

from sse_client import SSEClient
from tokens import VIEW_TOKEN

NOT_CPS = {"shop_id": "s1", "cps_joined_ms": None, "authorized_channels": []}


def produce_attributed(kafka, events, orders: dict[str, str]) -> None:
    """Orders attributed at once (CPS), each to the promoter named."""
    now = int(time.time() * 1000)
    kafka.produce("clicks", [(f"u-{o}", events.click(f"c-{o}", f"u-{o}", now - 1000, promoter=p))
                             for o, p in orders.items()])
    kafka.produce("orders", [(o, events.order(o, f"u-{o}", now)) for o in orders])


def test_filters_reconnect_with_last_event_id_and_limits(make_worker, kafka, events):
    worker = make_worker(CPS_MAX_SUBSCRIBERS="3").start()
    now = int(time.time() * 1000)
    assert worker.admin("PUT", "/admin/shops/s1", {"cps_joined_ms": now - 86_400_000})[0] == 200
    time.sleep(1.5)
    client = SSEClient(worker.port, "/subscribe?stream=attributions&promoter_id=pA")
    assert client.status == 200
    time.sleep(1.0)
    produce_attributed(kafka, events, {"o1": "pA", "o2": "pB", "o3": "pA"})
    assert client.wait(2), worker.tail()
    time.sleep(1)
    received = [d["order_id"] for _i, d in client.events]
    assert sorted(received) == ["o1", "o3"]  # partitions interleave; each order once
    assert all(d["promoter_id"] == "pA" for _i, d in client.events)
    first_id = client.events[0][0]
    client.close()

    produce_attributed(kafka, events, {"o4": "pA", "o5": "pB"})
    time.sleep(2)
    again = SSEClient(worker.port, "/subscribe?stream=attributions&promoter_id=pA",
                      last_event_id=first_id)
    assert again.wait(2)
    time.sleep(1)
    # Everything after the first event, including what came while disconnected, once.
    assert sorted(d["order_id"] for _i, d in again.events) == sorted({"o1", "o3", "o4"}
                                                                     - {received[0]})
    again.close()

    assert worker.get("/subscribe?stream=gossip")[0] == 400
    assert worker.request("GET", "/subscribe?stream=attributions",
                          headers={"Last-Event-ID": "garbage!"})[0] == 400
    held = [SSEClient(worker.port, "/subscribe?stream=commissions") for _ in range(3)]
    time.sleep(0.5)
    assert worker.get("/subscribe?stream=commissions")[0] == 503
    for client in held:
        client.close()


def test_a_client_that_does_not_read_is_cut_off(make_worker, kafka, events):
    worker = make_worker().start()
    assert worker.admin("PUT", "/admin/shops/s1", NOT_CPS)[0] == 200
    time.sleep(1.5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", worker.port))
    sock.sendall(b"GET /subscribe?stream=attributions HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer " + VIEW_TOKEN.encode() + b"\r\n\r\n")
    time.sleep(1.0)
    now = int(time.time() * 1000)
    for start in range(0, 3000, 1000):
        kafka.produce("orders", [(f"o{i}", events.order(f"o{i}", f"u{i}", now))
                                 for i in range(start, start + 1000)])
    deadline = time.monotonic() + 90
    cut = False
    while time.monotonic() < deadline and not cut:
        metrics = worker.get("/metrics")[1]
        cut = b"cps_subscribers_cut_off_total 1.0" in metrics
        time.sleep(1)
    sock.close()
    assert cut, worker.tail()
    assert b"cps_subscribers 0.0" in worker.get("/metrics")[1]
