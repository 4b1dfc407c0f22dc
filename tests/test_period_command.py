"""`cps period`: the next windows, in the zone asked for, and a clear error for bad input."""

from __future__ import annotations

from click.testing import CliRunner

from app.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["period", *args], env={"CPS_PLAN_TZ": "Asia/Shanghai"})


def test_prints_the_next_windows_in_the_plans_zone():
    result = run("* 20-30 8-20 * * ? 31", "--from", "2026-11-29T21:00", "--count", "2")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "2026-11-30T08:20:00+08:00  2026-11-30T20:31:00+08:00  12:11:00",
        "2026-12-01T08:20:00+08:00  2026-12-01T20:31:00+08:00  12:11:00"]


def test_a_fixed_term_in_the_past_has_no_window():
    result = run("0-0 0-0 0-0 24-25 4-4 * 2019-2019 2", "--tz", "UTC",
                 "--from", "2020-01-01T00:00")
    assert result.exit_code == 0 and result.output == "no window after that time\n"


def test_bad_input_is_refused_naming_the_field():
    assert "hour: '25'" in run("* * 25 * * ? 31").output
    assert run("* * * * * ? 31", "--tz", "Mars/Olympus").exit_code == 2
    assert "--from" in run("* * * * * ? 31", "--from", "yesterday").output


def test_a_period_whose_years_are_over_has_no_window():
    result = run("* * * * * ? 2019-2020 31", "--from", "2026-01-01T00:00")
    assert result.exit_code == 0 and result.output == "no window after that time\n"


def test_a_period_with_no_window_in_the_years_looked_at_says_how_far_it_looked():
    result = run("* * * 30 2 ? 31", "--from", "2026-01-01T00:00")  # 30 February
    assert result.exit_code == 0
    assert result.output == "no window in the 30 years after that time\n"
