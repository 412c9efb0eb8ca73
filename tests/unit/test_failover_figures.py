"""The failover section's arithmetic: answers classified, counts lost or doubled found,
and a slow answer or a lost window marking the report FAILED."""

from __future__ import annotations

from benchmarks.failover import Answer, kind_of, markdown, problems, summarise


def answer(client: str, kind: str, sent: float = 1.0, took: float = 0.01) -> Answer:
    return Answer(client, sent, took, kind)


def section(**overrides: object) -> dict[str, object]:
    figures: dict[str, object] = {
        "windows": 1000,
        "shards": 1,
        "decision_timeout_seconds": 1.0,
        "opened_in_seconds": 2.0,
        "asked_again_in_seconds": 2.0,
        "admitted_again": 0,
        "killed_at": 3.0,
        "dropped_after_seconds": 0.5,
        "owned_after_seconds": 1.5,
        "started_at": 8.0,
        "joined_after_seconds": 9.0,
        "taking_partitions_after_seconds": 10.0,
        "flood_seconds": 25.0,
        "load_average": 2.0,
        **summarise([answer("a", "admitted")], {"a": 1}),
    }
    figures.update(overrides)
    return figures


def test_answers_are_classified_as_the_api_gives_them() -> None:
    """A degraded 200 failed open; a "too busy" 429 is contended, any other an over-limit."""
    assert kind_of(200, b"", degraded=False) == "admitted"
    assert kind_of(200, b"", degraded=True) == "failed_open"
    assert kind_of(429, b'{"error": "too busy"}', degraded=False) == "contended"
    assert kind_of(429, b'{"error": "rate limit exceeded"}', degraded=False) == "over_limit"
    assert kind_of(503, b"", degraded=False) == "failed_closed"
    assert kind_of(502, b"", degraded=False) == "error"


def test_an_admission_not_stored_is_found() -> None:
    """Two 200s and a stored count of 1: one admission lost (it would over-admit)."""
    figures = summarise([answer("a", "admitted"), answer("a", "admitted")], {"a": 1})
    assert figures["admitted_not_stored"] == 1
    assert problems(section(**figures)) == ["failover: admitted not stored 1"]


def test_a_stored_count_above_the_admissions_is_explained_by_undecided_answers_only() -> None:
    """A contended answer may have counted; a count beyond the undecided answers is a
    double count."""
    answers = [answer("a", "admitted"), answer("a", "contended", sent=4.0)]
    explained = summarise(answers, {"a": 2})
    assert explained["stored_above_admitted"] == 1
    assert explained["stored_above_unexplained"] == 0
    assert (explained["undecided_first_at"], explained["undecided_last_at"]) == (4.0, 4.0)
    assert problems(section(**explained)) == []
    doubled = summarise(answers, {"a": 3})
    assert doubled["stored_above_unexplained"] == 1
    assert problems(section(**doubled)) == ["failover: stored above unexplained 1"]


def test_a_slow_answer_a_lost_window_or_a_failed_open_answer_fails_the_section() -> None:
    """Slower than the decision timeout + 1 s, a window lost in a move, or an answer failed
    open while two members answered: FAILED."""
    slow = summarise([answer("a", "admitted", took=2.5)], {"a": 1})
    assert problems(section(**slow)) == [
        "failover: an answer took 2.50s, more than the decision timeout + 1 s"
    ]
    assert problems(section(admitted_again=3)) == ["failover: admitted again 3"]
    failed_open = summarise([answer("a", "admitted"), answer("b", "failed_open")], {"a": 1})
    assert problems(section(**failed_open)) == ["failover: 1 answers failed open"]
    assert problems(None) == []


def test_the_report_lines_name_the_figures() -> None:
    """The Markdown gives the slowest answer, the kill's figures and the exactness."""
    text = "\n".join(markdown(section()))
    assert "1,000 windows (1 shard entries)" in text
    assert "every partition with a live owner after **1.5 s**" in text
    assert "admissions not stored: **0**" in text
    assert markdown(None) == []
