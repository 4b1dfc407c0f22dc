"""`cps dev` (what `make run` runs): local broker, one worker, demo traffic, live output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import webbrowser
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import aiohttp
import click
import orjson
from aiohttp import web

from app.broker.local import BrokerError, LocalBroker
from app.cli.demo import run_demo
from app.cli.worker import EXIT_RESTART
from app.config.settings import Settings
from app.domain.tokens import Signer
from app.kafka.connection import KafkaConnection
from app.services.admin import issue_link
from app.web.local_http import serve

# Above the demo's flow of kuaishou results, so the sink keeps up and its queue stays short.
DEMO_SINK_RATE = 1000
DEMO_SECRETS = ("CPS_ADMIN_TOKEN", "CPS_VIEW_TOKEN", "CPS_LINK_SECRET")
DEMO_NOTES = {"CPS_VIEW_TOKEN": ": the dashboard's sign-in",
              "CPS_SETTLEMENT_SCHEDULE": ": every 10 seconds"}


@click.command("dev")
@click.option("--rate", default=200, show_default=True, type=click.IntRange(1, 100_000),
              help="Demo events per second.")
@click.option("--browser/--no-browser", default=True, show_default=True,
              help="Open the dashboard in a browser when a desktop is available.")
@click.pass_obj
def command(settings: Settings, rate: int, browser: bool) -> None:
    """Start the local broker, a worker on CPS_WEB_PORT and the demo; Ctrl-C stops them all.

    Without CPS_ADMIN_TOKEN, CPS_VIEW_TOKEN and CPS_LINK_SECRET it makes demo
    values and prints them, and it checks settlements every 10 seconds unless
    CPS_SETTLEMENT_SCHEDULE says otherwise. The worker's log goes to
    CPS_DATA_DIR/dev-worker.log. Once the worker is ready it opens the
    dashboard in a browser when a desktop is available, and always prints
    its address and how to sign in to it (with the view token). A worker
    that exits to restart from committed state (status 75) is started again;
    one that fails stops everything, showing the end of its log.
    """
    _stop_on_signals()
    made = demo_values(os.environ)
    env = {**os.environ, **made}
    for name, value in made.items():
        click.echo(f"{name}={value}  (demo value{DEMO_NOTES.get(name, '')})")
    broker = LocalBroker(settings.kafka_home, settings.kafka_port,
                         report=lambda line: click.echo(line))
    started_broker = False
    if not env.get("CPS_BROKER"):  # no cluster given: use the local broker
        started_broker = broker.running() is None
        try:
            state = broker.start()
        except BrokerError as exc:
            click.echo(f"cps dev: {exc}", err=True)
            sys.exit(1)
        settings = replace(settings, broker=state.bootstrap)
        env["CPS_BROKER"] = state.bootstrap
    click.echo(f"kafka: bootstrap={settings.broker}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "dev-worker.log"
    worker = DevWorker([sys.executable, "-m", "app", "worker"], env, log_path)
    try:
        _wait_ready(settings, worker)
        base = f"http://127.0.0.1:{settings.web_port}"
        click.echo(f"worker ready: {base}/ready   (log: {log_path})")
        click.echo(f"dashboard: {base}/dashboard")
        click.echo(f"  it asks for a token first: sign in with the view token "
                   f"({_shown_view_token(made)}); the browser then stays signed in for "
                   f"{_hours_or_minutes(settings.session_ttl_s)}")
        click.echo(f"coupon plan results (conversions, uses, lift): {base}/plans/demo-coupon")
        click.echo(f"sales operators' assignments and caps: {base}/plans/demo-assign")
        if browser and _has_desktop():
            webbrowser.open(f"{base}/dashboard")
        click.echo(f"demo promotion link (open it in a browser): {_demo_link(env, base)}")
        click.echo("streaming demo traffic; attributions follow. Ctrl-C stops everything.")
        asyncio.run(_demo_and_watch(settings, rate, env["CPS_ADMIN_TOKEN"], worker))
    except KeyboardInterrupt:
        click.echo("\nstopping...")
    finally:
        worker.stop()
        if started_broker:
            broker.stop()
            click.echo("stopped the worker and the broker")
        else:
            click.echo("stopped the worker (the broker was not started here; it keeps running)")


def demo_values(env: Mapping[str, str]) -> dict[str, str]:
    """Values of the secrets and the settlement schedule `env` lacks, so the demo runs with
    no setup: random secrets, and settlements checked every 10 seconds."""
    made = {name: f"demo-{secrets.token_urlsafe(12)}" for name in DEMO_SECRETS
            if not env.get(name)}
    if not env.get("CPS_SETTLEMENT_SCHEDULE"):
        # Backdated demo orders fall due at once; check every 10 s so they show soon.
        made["CPS_SETTLEMENT_SCHEDULE"] = "* * * * * */10"
    return made


def _shown_view_token(made: Mapping[str, str]) -> str:
    """The demo view token, or where the given one is (its value is not shown)."""
    return made.get("CPS_VIEW_TOKEN") or "your CPS_VIEW_TOKEN"


def _hours_or_minutes(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


def _stop_on_signals() -> None:
    """Stop everything on Ctrl-C and on SIGTERM, also when started in the background.

    A shell starts background jobs with SIGINT ignored, and SIGTERM would
    end this process without stopping the worker and broker it started.
    """
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _demo_link(env: dict, base: str) -> str:
    """A link of the demo's first promoter to a demo product page served by the worker."""
    link = issue_link(Signer(env["CPS_LINK_SECRET"]), {
        "channel_id": "kuaishou", "promoter_id": "p-0001", "shop_id": "shop-000",
        "item_id": "shop-000-item-00", "url": f"{base}/demo/product?item=shop-000-item-00",
    }, now_ms=int(time.time() * 1000), default_ttl_s=7 * 86_400, public_url=base)
    return link["url"]


def _has_desktop() -> bool:
    """Whether a graphical browser can open; without one `webbrowser` would start a text browser."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class DevWorker:
    """The worker process of `cps dev`, started again when it stops to restart.

    `cps worker` exits with EXIT_RESTART when it must start over from committed
    state (its partitions were fenced or lost); in production its supervisor
    restarts it (Docker's restart policy, systemd), and here this does.
    """

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv, self.env, self.log_path = argv, env, log_path
        self.restarts = 0
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(self.argv, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT)

    def check(self) -> None:
        """Start the worker again if it stopped to restart; a ClickException with the end
        of its log if it stopped for any other reason."""
        status = self.process.poll()
        if status is None:
            return
        if status != EXIT_RESTART:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
            raise click.ClickException(f"the worker exited with {status}:\n{tail}")
        self.restarts += 1
        click.echo(f"the worker stopped to restart from committed state (exit {status}); "
                   f"starting it again (restart {self.restarts}, log: {self.log_path})")
        self.process = self._start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def supervise(worker: DevWorker, *, every_s: float = 1.0) -> None:
    """Check the worker every `every_s` until it fails (raises) or this is cancelled."""
    while True:
        worker.check()
        await asyncio.sleep(every_s)


def _wait_ready(settings: Settings, worker: DevWorker) -> None:
    url = f"http://127.0.0.1:{settings.web_port}/ready"
    deadline = time.monotonic() + 180
    click.echo("starting the worker...")
    while time.monotonic() < deadline:
        worker.check()
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(1)
    raise click.ClickException(f"the worker was not ready after 180 s; see {worker.log_path}")


async def _demo_and_watch(settings: Settings, rate: int, admin_token: str,
                          worker: DevWorker) -> None:
    receiver = DemoReceiver()
    await receiver.start()
    await _configure_demo_sink(settings, admin_token, receiver.url)
    print(f"demo webhook receiver: {receiver.url} (sink demo-webhook: commissions and "
          f"settlements of kuaishou orders, and the demo plans' actions, at most "
          f"{DEMO_SINK_RATE} per second)", flush=True)
    demo = asyncio.create_task(run_demo(settings, rate=rate, events=0, buyers=3000, seed=7))
    supervising = asyncio.create_task(supervise(worker))
    watching = asyncio.create_task(_watch_attributions(
        settings, receiver, f"http://127.0.0.1:{settings.web_port}/plans/demo-coupon"))
    try:
        # Both run until cancelled; the first to raise (a worker that failed) ends the demo.
        done, _ = await asyncio.wait({supervising, watching},
                                     return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in (demo, supervising, watching):
            task.cancel()
        await asyncio.gather(demo, supervising, watching, return_exceptions=True)
        await receiver.stop()


class DemoReceiver:
    """A local webhook endpoint for the demo sink: counts what it receives, shows a few."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.shown = 3
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner, self.url = await serve("/demo-webhook", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.received[body["stream"]] += 1
        if self.shown > 0:
            self.shown -= 1
            event = body["event"]
            print(f"webhook got {body['stream']} {event.get('order_id') or event.get('action_id')} "
                  f"(Idempotency-Key {request.headers.get('Idempotency-Key')})", flush=True)
        return web.Response(status=204)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _configure_demo_sink(settings: Settings, admin_token: str, url: str) -> None:
    body = {"kind": "webhook", "url": url, "streams": ["commissions", "settlements"],
            "filters": {"channel_id": "kuaishou"}, "rate_per_s": DEMO_SINK_RATE, "burst": 100}
    async with aiohttp.ClientSession() as session, session.put(
            f"http://127.0.0.1:{settings.web_port}/admin/sinks/demo-webhook", json=body,
            headers={"Authorization": f"Bearer {admin_token}"}) as response:
        if response.status != 200:
            raise click.ClickException(f"could not configure the demo sink: "
                                       f"{response.status} {await response.text()}")


async def _watch_attributions(settings: Settings, receiver: DemoReceiver, plan_results: str, *,
                              shown: int = 12) -> None:
    """Print the first results, then a summary every 5 seconds (with where the coupon
    plan's results are, once it has any)."""
    names = {settings.topic_prefix + name: name
             for name in ("attributions", "commissions", "settlements", "operation_records",
                          "assignments")}
    consumer = KafkaConnection.from_settings(settings).consumer(
        *names, group_id=None, auto_offset_reset="latest", isolation_level="read_committed")
    await consumer.start()
    kinds: Counter[str] = Counter()
    money: Counter[str] = Counter()
    records: Counter[str] = Counter()
    operators: Counter[str] = Counter()
    delays: list[int] = []
    # Lines shown of the first results: per topic, and of the plans' outcomes per kind.
    left = Counter({"attributions": shown, "commissions": 4, "settlements": 4,
                    "operation_records/used": 2, "operation_records/converted": 2,
                    "operation_records/replenished": 2, "assignments": 3})
    next_summary = time.monotonic() + 5
    try:
        while True:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                topic = names[tp.topic]
                for message in messages:
                    result = orjson.loads(message.value)
                    if topic == "attributions":
                        kinds[result["type"] + "/" + (result["mode"] or result["reason"])] += 1
                        delays.append(result["attributed_ms"] - result["ts_ms"])
                    elif topic == "commissions":
                        money["commission events"] += 1
                        money["commission total"] += result["delta"]
                    elif topic == "settlements":
                        money[f"settlements {result['state']}"] += 1
                    elif topic == "assignments":
                        operators[result["operator_id"]] += 1
                    else:
                        records[result["kind"]] += 1
                    shown_as = (f"{topic}/{result['kind']}" if topic == "operation_records"
                                else topic)
                    if left[shown_as] > 0:
                        left[shown_as] -= 1
                        print(_LINES[topic](result), flush=True)
            if time.monotonic() >= next_summary:
                next_summary += 5
                if delays:
                    delays.sort()
                    print(f"-- {sum(kinds.values())} attributions: "
                          + ", ".join(f"{k} {n}" for k, n in kinds.most_common())
                          + f"; delay p50 {delays[len(delays) // 2]} ms", flush=True)
                    delays.clear()
                if money:
                    print("-- " + ", ".join(f"{k} {n}" for k, n in sorted(money.items())),
                          flush=True)
                if records:
                    print("-- plan records: " + ", ".join(
                        f"{kind} {n}" for kind, n in sorted(records.items()))
                        + f"; results and lift: {plan_results}", flush=True)
                if operators:
                    print("-- assignments: " + ", ".join(
                        f"{operator} {n}" for operator, n in sorted(operators.items()))
                        + f"; operators' counts and caps: {plan_results.rsplit('/', 1)[0]}"
                        "/demo-assign", flush=True)
                if receiver.received:
                    print("-- demo webhook received: " + ", ".join(
                        f"{stream} {n}" for stream, n in sorted(receiver.received.items())),
                        flush=True)
    finally:
        await consumer.stop()


def _attribution_line(result: dict) -> str:
    who = (f"promoter {result['promoter_id']} via {result['channel_id']}"
           if result["type"] == "cps" else
           f"channel {result['channel_id']}" if result["type"] == "self_operated" else
           f"reason {result['reason']}")
    return (f"attribution {result['order_id']}: {result['type']}/{result['mode'] or '-'} "
            f"buyer {result['buyer_id']} shop {result['shop_id']} {who}"
            f"{' (delayed)' if result['delayed'] else ''}")


def _record_line(record: dict) -> str:
    return (f"plan record {record['kind']}: {record['plan_id']} variant {record['variant']} "
            f"buyer {record['buyer_id']} order {record['ref']}")


def _commission_line(result: dict) -> str:
    return (f"commission {result['order_id']} {result['item_id']} {result['pool']} pool: "
            f"{result['participant']} {result['account_id']} {result['delta']:+d} "
            f"(total {result['total']}, {result['rate_bp']} bp, {result['cause']})")


def _settlement_line(result: dict) -> str:
    return (f"settlement {result['order_id']}: {result['participant']} {result['account_id']} "
            f"{result['state']} {result['amount']}")


def _assignment_line(given: dict) -> str:
    return (f"assignment: buyer {given['buyer_id']} to operator {given['operator_id']} "
            f"({given['plan_id']})")


_LINES = {"attributions": _attribution_line, "commissions": _commission_line,
          "settlements": _settlement_line, "operation_records": _record_line,
          "assignments": _assignment_line}
