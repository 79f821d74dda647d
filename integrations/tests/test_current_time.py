from __future__ import annotations

import datetime as dt
import re

from integrations import tools

_OUTPUT = re.compile(r"^(?P<iso>\S+) \((?P<zone>[^,]+), (?P<weekday>[A-Z][a-z]+day)\)$")


def _parse(output: str) -> tuple[dt.datetime, str, str]:
    match = _OUTPUT.match(output)
    assert match, output
    return dt.datetime.fromisoformat(match["iso"]), match["zone"], match["weekday"]


def test_it_defaults_to_utc():
    result = tools.invoke("current_time", {})

    assert not result.is_error, result.output
    moment, zone, weekday = _parse(result.output)
    assert zone == "UTC"
    assert moment.utcoffset() == dt.timedelta(0)
    assert abs(moment - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
    assert weekday == moment.strftime("%A")


def test_it_reports_a_named_zones_offset():
    result = tools.invoke("current_time", {"timezone": "Asia/Tokyo"})

    assert not result.is_error, result.output
    moment, zone, _weekday = _parse(result.output)
    assert zone == "Asia/Tokyo"
    assert result.output.split(" ")[0].endswith("+09:00")
    assert abs(moment - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_it_turns_an_unknown_zone_into_an_error_result_with_an_example():
    result = tools.invoke("current_time", {"timezone": "Mars/Olympus_Mons"})

    assert result.is_error
    assert "Mars/Olympus_Mons" in result.output
    assert "Europe/Berlin" in result.output


def test_it_suggests_the_right_spelling_of_a_zone():
    result = tools.invoke("current_time", {"timezone": "asia/tokyo"})

    assert result.is_error
    assert "did you mean 'Asia/Tokyo'" in result.output


def test_it_refuses_paths_posing_as_zones():
    for name in ["../../etc/passwd", "/etc/localtime", "America"]:
        result = tools.invoke("current_time", {"timezone": name})
        assert result.is_error, name
        assert "unknown time zone" in result.output


def test_it_rejects_unexpected_arguments():
    result = tools.invoke("current_time", {"tz": "UTC"})

    assert result.is_error
    assert "tz" in result.output
