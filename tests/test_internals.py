"""The private parts of Faust and aiokafka the engine uses are all still there.

After upgrading either library, this test names every attribute that went
away (app/engine/internals.py lists them and says what each is for).
"""

from __future__ import annotations

import pytest
from faust.transport.consumer import Consumer

from app.engine import internals


def test_every_private_attribute_the_engine_uses_exists():
    assert internals.missing() == []


def test_a_removed_attribute_is_named(monkeypatch):
    monkeypatch.setattr(internals, "PRIVATE_ATTRIBUTES",
                        (*internals.PRIVATE_ATTRIBUTES, (Consumer, "_removed_in_a_release")))
    assert internals.missing() == [
        "faust.transport.consumer.Consumer._removed_in_a_release"]
    with pytest.raises(RuntimeError, match=r"Consumer\._removed_in_a_release"):
        internals.require()
