"""Cron arithmetic of `intentloop train schedule` and its settings."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from intentloop.cli import main
from intentloop.schedule import next_fire, upcoming
from trainer.settings import TrainSettings


def test_nightly_default_fires_at_two_utc():
    assert TrainSettings().schedule == "0 2 * * *"
    assert next_fire("0 2 * * *", datetime(2025, 3, 1, 1, 59, tzinfo=UTC)) == datetime(
        2025, 3, 1, 2, 0, tzinfo=UTC
    )
    # strictly after: a tick at the fire time schedules the next night, not the same minute again
    assert next_fire("0 2 * * *", datetime(2025, 3, 1, 2, 0, tzinfo=UTC)) == datetime(
        2025, 3, 2, 2, 0, tzinfo=UTC
    )


def test_next_fire_is_utc_whatever_the_input_zone():
    berlin = timezone(timedelta(hours=1))
    # 02:30 in Berlin is 01:30 UTC: the 02:00 UTC fire of that day is still ahead
    assert next_fire("0 2 * * *", datetime(2025, 3, 1, 2, 30, tzinfo=berlin)) == datetime(
        2025, 3, 1, 2, 0, tzinfo=UTC
    )
    assert next_fire("*/15 * * * *", datetime(2025, 3, 1, 10, 7)) == datetime(2025, 3, 1, 10, 15, tzinfo=UTC)


def test_upcoming_lists_consecutive_fires():
    start = datetime(2025, 2, 27, 12, 0, tzinfo=UTC)
    assert upcoming("0 2 * * 1-5", 3, start) == [  # weekdays only: Fri 28th, then Mon 3rd, Tue 4th
        datetime(2025, 2, 28, 2, 0, tzinfo=UTC),
        datetime(2025, 3, 3, 2, 0, tzinfo=UTC),
        datetime(2025, 3, 4, 2, 0, tzinfo=UTC),
    ]


def test_a_bad_cron_expression_is_a_configuration_error(monkeypatch, capsys):
    with pytest.raises(ValidationError, match="not a cron expression"):
        TrainSettings(schedule="every night")
    monkeypatch.setenv("INTENTLOOP_TRAIN__SCHEDULE", "61 * * * *")
    with pytest.raises(SystemExit) as exc:
        main(["train", "schedule", "--next", "2"])
    assert exc.value.code == 2
    assert "INTENTLOOP_TRAIN__SCHEDULE" in capsys.readouterr().err


def test_cli_prints_the_next_fire_times(monkeypatch, capsys):
    monkeypatch.setenv("INTENTLOOP_TRAIN__SCHEDULE", "30 3 * * *")
    main(["train", "schedule", "--next", "2"])
    lines = capsys.readouterr().out.split()
    first, second = (datetime.fromisoformat(x) for x in lines)
    assert (first.hour, first.minute, second - first) == (3, 30, timedelta(days=1))
