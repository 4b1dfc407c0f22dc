"""`build(settings)` makes a whole engine, importing creates none, and two can coexist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.bootstrap import build
from app.config.settings import Settings
from app.engine.faust.attached import attached
from app.engine.faust.delivery import engine_of
from app.engine.faust.table_access import rocksdb_of

ROOT = Path(__file__).resolve().parents[1]


def test_importing_every_module_reads_no_setting_and_builds_nothing():
    # A malformed setting would stop any module that read the environment at import.
    code = ("import pkgutil, importlib, app, agents, tables, faust\n"
            "for package in (app, agents, tables):\n"
            "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
            "        if not info.name.startswith(('app.bench', 'app.cli', 'app.__main__')):\n"
            "            importlib.import_module(info.name)\n"
            "import gc\n"
            "print(sum(isinstance(o, faust.App) for o in gc.get_objects()))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env={"CPS_PARTITIONS": "not a number", "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_two_engines_in_one_process_keep_to_themselves(tmp_path):
    first, second = (build(Settings.from_env({
        "CPS_TOPIC_PREFIX": prefix, "CPS_APP_ID": prefix.rstrip("."),
        "CPS_DATA_DIR": str(tmp_path / prefix), "CPS_ADMIN_TOKEN": "a",
        "CPS_LINK_SECRET": "b"})) for prefix in ("one.", "two."))
    assert first.app is not second.app and first.engine is not second.engine
    assert all(topic.startswith("one.") for topic in first.engine.handlers)
    assert all(topic.startswith("two.") for topic in second.engine.handlers)
    assert first.engine.handlers.keys() == {
        topic.replace("two.", "one.", 1) for topic in second.engine.handlers}
    assert {table.table.name for table in first.engine.tables} == {
        table.table.name for table in second.engine.tables}
    assert first.engine.tables[0] is not second.engine.tables[0]
    # Each app's consumer hands its messages to its own engine.
    assert engine_of(first.app) is first.engine
    assert engine_of(second.app) is second.engine
    assert sorted(first.app.agents) == ["allocation", "attribution", "balances", "billing",
                                        "configuration",
                                        "orders", "plans", "promoter_orders"]


def test_two_engines_in_one_process_keep_their_own_rocksdb_memory(tmp_path):
    first, second = (build(Settings.from_env({
        "CPS_TOPIC_PREFIX": prefix, "CPS_APP_ID": prefix.rstrip("."),
        "CPS_DATA_DIR": str(tmp_path / prefix), "CPS_ADMIN_TOKEN": "a",
        "CPS_LINK_SECRET": "b", "CPS_ROCKSDB_MEMORY_MB": megabytes}))
        for prefix, megabytes in (("one.", "64"), ("two.", "32")))
    caches = [attached(services.app).rocksdb_memory.cache for services in (first, second)]
    assert caches[0] is not caches[1]
    db = rocksdb_of(first.engine.tables[0].table, 0)
    for n in range(6_000):
        db[b"key-%d" % n] = b"x" * 1000
    # About 6 MiB of memtables (below a write buffer: no flush yet), charged to the first
    # engine's budget alone.
    assert 4 * 1024 * 1024 < caches[0].get_usage() <= 64 * 1024 * 1024
    assert caches[1].get_usage() < 1024 * 1024
    db.close()
