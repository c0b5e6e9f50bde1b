"""Who is talking, in a few lines: pure tests of the demo's talk report."""

from __future__ import annotations

from bridge.demo.talk import TalkReport


def _run(report: TalkReport, seconds: float, talking_at: object) -> list[str]:
    lines: list[str] = []
    t = 0.0
    while t < seconds:
        lines += report.update(t, talking_at(t))  # type: ignore[operator]
        t = round(t + 0.1, 1)
    return lines


def _turns(t: float) -> set[str]:
    """Carol talks in the first half of every 8 s, Dave in the second (the demo's callers)."""
    return {"Carol"} if t % 8 < 3.5 else {"Dave"} if 4 <= t % 8 < 7.5 else set()


def test_ten_minutes_of_turn_taking_fit_in_a_dozen_lines() -> None:
    lines = _run(TalkReport(), 600.05, _turns)
    assert lines[:2] == ["talking: Carol started talking", "talking: Dave started talking"]
    assert len(lines) <= 12, lines  # the old screen printed 300 starts and 300 stops
    summaries = [line for line in lines if line.startswith("talk time")]
    assert len(summaries) == 10
    for summary in summaries:  # about 26 s each, give or take where the minute cuts a turn
        assert "Carol 2" in summary and "Dave 2" in summary, summary


def test_a_newcomer_is_told_at_once_then_summarised() -> None:
    report = TalkReport()
    lines = _run(report, 90, lambda t: _turns(t) | ({"Guest"} if 30 <= t < 33 else set()))
    assert "talking: Guest started talking" in lines
    assert sum("Guest started" in line for line in lines) == 1


def test_someone_back_after_a_quiet_minute_is_news_again() -> None:
    lines = _run(TalkReport(), 200, lambda t: {"Ann"} if t < 2 or 100 <= t < 102 else set())
    assert lines.count("talking: Ann started talking") == 2


def test_detail_is_added_to_start_lines() -> None:
    report = TalkReport()
    assert report.update(0.0, {"Ann"}, lambda name: "-20 dBFS") == [
        "talking: Ann started talking (-20 dBFS)"
    ]
