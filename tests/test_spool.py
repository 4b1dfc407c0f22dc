"""The click spool on disk: durable appends, ordered reads, crash tails, release."""

from __future__ import annotations

import asyncio

from app.services.spool import ClickSpool


def append_all(spool: ClickSpool, lines: list[bytes]) -> list[int]:
    async def run():
        return await asyncio.gather(*(spool.append(line) for line in lines))
    return asyncio.run(run())


def test_appends_are_numbered_and_read_back_in_order(tmp_path):
    spool = ClickSpool(tmp_path)
    assert append_all(spool, [b'{"n":1}', b'{"n":2}', b'{"n":3}']) == [1, 2, 3]
    assert spool.read_after(0, 10) == [(1, b'{"n":1}'), (2, b'{"n":2}'), (3, b'{"n":3}')]
    assert spool.read_after(2, 10) == [(3, b'{"n":3}')]
    assert spool.read_after(0, 2) == [(1, b'{"n":1}'), (2, b'{"n":2}')]
    assert spool.depth == 3


def test_a_reopened_spool_continues_and_drops_a_torn_last_line(tmp_path):
    spool = ClickSpool(tmp_path)
    append_all(spool, [b"a", b"b"])
    segment = next(tmp_path.glob("seg-*.log"))
    with open(segment, "ab") as handle:
        handle.write(b"3\t{half a cli")  # a crash in the middle of a write
    again = ClickSpool(tmp_path)
    assert again.read_after(0, 10) == [(1, b"a"), (2, b"b")]
    assert append_all(again, [b"c"]) == [3]
    assert again.read_after(0, 10) == [(1, b"a"), (2, b"b"), (3, b"c")]
    assert again.spool_id == spool.spool_id


def test_sent_segments_are_deleted_but_never_the_current_one(tmp_path):
    spool = ClickSpool(tmp_path, segment_bytes=10)
    append_all(spool, [b"x" * 10])
    append_all(spool, [b"y" * 10])
    append_all(spool, [b"z" * 10])
    assert len(list(tmp_path.glob("seg-*.log"))) == 3
    spool.release_through(2)
    assert len(list(tmp_path.glob("seg-*.log"))) == 1
    assert spool.read_after(2, 10) == [(3, b"z" * 10)]
    spool.release_through(3)
    assert len(list(tmp_path.glob("seg-*.log"))) == 1  # still being written to
    assert spool.depth == 0
    assert append_all(ClickSpool(tmp_path, segment_bytes=10), [b"w"]) == [4]
