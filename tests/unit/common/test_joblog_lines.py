"""Job log lines without NATS: which records name a job, how a line is cut, and the queue's bound."""

from __future__ import annotations

import logging
import sys

from prometheus_client import REGISTRY

from tingyu.common import joblog, logs, subjects
from tingyu.common.names import new_job_id


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    made.__dict__.update(extra)
    return made


def test_a_record_names_its_own_job_first_then_the_context() -> None:
    mine, context = new_job_id(), new_job_id()
    assert joblog.job_of(record("x")) == ""
    token = logs.job_id.set(context)
    try:
        assert joblog.job_of(record("x")) == context
        assert joblog.job_of(record("x", job_id=mine)) == mine
    finally:
        logs.job_id.reset(token)
    # A message id that is not a job id (a deadline's, a forged subject token) names no job.
    assert joblog.job_of(record("x", job_id=f"deadline-{mine}")) == ""
    assert joblog.job_of(record("x", job_id="a.b.>")) == ""


def test_a_line_is_cut_on_a_character_boundary_and_marked() -> None:
    assert joblog.cut("short") == "short"
    exact = "a" * subjects.JOBLOG_LINE_MAX
    assert joblog.cut(exact) == exact
    cut = joblog.cut("雨" * subjects.JOBLOG_LINE_MAX)
    assert cut.endswith(joblog.CUT_MARK)
    assert len(cut.encode()) <= subjects.JOBLOG_LINE_MAX
    assert set(cut.removesuffix(joblog.CUT_MARK)) == {"雨"}


def test_a_line_carries_the_error_of_its_record() -> None:
    try:
        raise ValueError("bad digest")
    except ValueError:
        failed = logging.LogRecord("t", logging.ERROR, __file__, 1, "push %s", ("img",), sys.exc_info())
    line = joblog.line_of(failed, "imager")
    assert (line.service, line.level, line.message) == (
        "imager",
        "ERROR",
        "push img (ValueError: bad digest)",
    )


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    forwarder = joblog.Forwarder("api", capacity=5)
    before = REGISTRY.get_sample_value("tingyu_joblog_dropped_total", {"reason": "full"}) or 0.0
    job = new_job_id()
    for number in range(8):
        forwarder.handle(record(f"line {number}", job_id=job))
    forwarder.handle(record("no job"))
    assert [line.message for _, line in forwarder.queue] == [f"line {n}" for n in range(5)]
    assert REGISTRY.get_sample_value("tingyu_joblog_dropped_total", {"reason": "full"}) == before + 3
