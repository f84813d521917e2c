"""The supervisor's log for a terminal, for journald (priority prefixes) and as JSON lines."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from runner.supervisor import logformat
from runner.supervisor.events import EventLog


def _record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("nirunner.api", level, __file__, 1, msg, (), exc_info)


@pytest.mark.parametrize("level,prio", [(logging.DEBUG, 7), (logging.INFO, 6),
                                        (logging.WARNING, 4), (logging.ERROR, 3),
                                        (logging.CRITICAL, 2)])
def test_journal_lines_carry_the_syslog_priority(level: int, prio: int) -> None:
    line = logformat.JournalFormatter().format(_record(level, "hello"))
    assert line == f"<{prio}>nirunner.api: hello"  # no timestamp: journald has one


def test_journal_traceback_lines_keep_the_priority() -> None:
    text = logformat.JournalFormatter().format(_record(logging.ERROR, "failed", exc=True))
    lines = text.splitlines()
    assert lines[0] == "<3>nirunner.api: failed" and len(lines) > 2
    assert all(ln.startswith("<3>") for ln in lines)
    assert lines[-1] == "<3>RuntimeError: boom"


def test_json_lines_with_event_fields() -> None:
    out = io.StringIO()
    logformat.setup("json", stream=out)
    try:
        EventLog().emit("task.exited", "factory", "task exited", logging.WARNING, status=137)
        logging.getLogger("nirunner.api").info("plain")
    finally:
        logformat.setup("text")
    first, second = (json.loads(ln) for ln in out.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "nirunner.events"
    assert (first["event"], first["ni"], first["fields"]) == ("task.exited", "factory",
                                                              {"status": 137})
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second == {"time": second["time"], "level": "info", "logger": "nirunner.api",
                      "message": "plain"}


def test_auto_is_journal_only_on_the_stream_systemd_connected(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    with open(tmp_path / "log", "w") as f, open(tmp_path / "other", "w") as g:
        st = os.fstat(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert isinstance(logformat.formatter("auto", f), logformat.JournalFormatter)
        assert not isinstance(logformat.formatter("auto", g), logformat.JournalFormatter)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not isinstance(logformat.formatter("auto", f), logformat.JournalFormatter)
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not logformat.connected_to_journal(f)


def test_text_has_a_timestamp() -> None:
    line = logformat.formatter("text", io.StringIO()).format(_record(logging.INFO, "hi"))
    assert line.endswith(" INFO nirunner.api: hi") and line[:4].isdigit()
    with pytest.raises(ValueError, match="one of auto, text, journal, json"):
        logformat.formatter("xml", io.StringIO())
