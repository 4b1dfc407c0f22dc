"""The injector `build` wires pipelines and web views with: each function gets the parts
its parameters name, and a name nobody provides stops the build, naming both."""

from __future__ import annotations

import pytest

from app.config.wiring import Injector, WiringError


def register(*, engine: str, topics: str, limit: int = 3) -> tuple[str, str, int]:
    return engine, topics, limit


def test_each_parameter_gets_the_part_of_its_name_and_a_default_stays():
    wire = Injector({"engine": "the engine", "topics": "the topics", "catalog": "unused"})
    assert wire(register) == ("the engine", "the topics", 3)


def test_a_part_named_like_a_parameter_with_a_default_replaces_the_default():
    wire = Injector({"engine": "e", "topics": "t", "limit": 9})
    assert wire(register) == ("e", "t", 9)


def test_links_hand_over_what_no_part_is():
    assert Injector({"engine": "e"})(register, topics="linked") == ("e", "linked", 3)


def test_an_unknown_name_names_the_function_and_the_parameter():
    with pytest.raises(WiringError) as failure:
        Injector({"engine": "e", "catalog": "c"})(register)
    message = str(failure.value)
    assert f"{__name__}.register asks for topics" in message
    assert "catalog, engine" in message


def test_a_link_no_parameter_takes_is_refused():
    with pytest.raises(WiringError, match="register has no parameter extra"):
        Injector({"engine": "e", "topics": "t"})(register, extra=1)


def test_a_link_may_not_hide_a_part():
    with pytest.raises(WiringError, match="topics given, but a part has that name"):
        Injector({"engine": "e", "topics": "t"})(register, topics="other")


def test_a_parameter_that_cannot_be_given_by_name_is_refused():
    def positional(engine: str, /) -> str:
        return engine

    with pytest.raises(WiringError, match="parameter engine cannot be given by name"):
        Injector({"engine": "e"})(positional)
