"""Time-zone names: validated like Kubernetes' CronJob spec.timeZone, loaded from ``tzdata``."""

from __future__ import annotations

import shutil
import zoneinfo
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from nightshift import timezones
from nightshift.timezones import TimeZoneError, load_zone

VALID = [
    "UTC",
    "Etc/UTC",
    "Europe/Zurich",
    "America/New_York",
    "America/Argentina/Buenos_Aires",  # three components
    "America/Port-au-Prince",  # a 14-character component with dashes
    "America/Argentina/ComodRivadavia",  # a 14-character component (backward link)
    "Etc/GMT+5",  # "+" is allowed
    "Etc/GMT-14",
    "EST5EDT",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_zone(name: str) -> None:
    zone = load_zone(name)
    assert isinstance(zone, zoneinfo.ZoneInfo)
    assert zone.key == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Mars/Olympus", 'unknown time zone "Mars/Olympus"'),
        ("Local", 'time zone "Local" is not allowed'),
        ("", "must not be empty"),
        ("../etc/passwd", 'unknown time zone "../etc/passwd"'),
        ("Europe/../../../etc/passwd", "unknown time zone"),
        ("./UTC", "unknown time zone"),
        ("/UTC", "unknown time zone"),
        ("UTC/", "unknown time zone"),
        ("Europe//Zurich", "unknown time zone"),
        ("America/New York", "unknown time zone"),
        ("utc", "unknown time zone"),  # names are case-sensitive, as in Kubernetes
        ("America", "unknown time zone"),  # a directory, not a zone
        ("America/ABCDEFGHIJKLMNO", "unknown time zone"),  # 15-character component
        ("zone.tab", "unknown time zone"),  # a data file of the package, not a zone
        ("__init__.py", "unknown time zone"),
        ("America/Argentina/" + "A" * 60, "longer than 64"),
        ("Europe/Zürich", "unknown time zone"),
        ("Europe\\Zurich", "unknown time zone"),
    ],
)
def test_invalid_zone(name: str, message: str) -> None:
    with pytest.raises(TimeZoneError) as info:
        load_zone(name)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_zone_message_is_exact() -> None:
    with pytest.raises(TimeZoneError) as info:
        load_zone("Mars/Olympus")
    assert str(info.value) == 'unknown time zone "Mars/Olympus"'


@pytest.mark.parametrize("name", ["America/ABCDEFGHIJKLMNO", "ABCDEFGHIJKLMNO", "../etc/passwd"])
def test_bad_names_are_refused_before_any_lookup(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(name: str) -> zoneinfo.ZoneInfo:
        raise AssertionError(f"looked up {name!r}")

    monkeypatch.setattr(timezones, "_load", fail)
    with pytest.raises(TimeZoneError, match="unknown time zone"):
        load_zone(name)


def test_14_character_component_passes_the_name_check(monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up = []
    monkeypatch.setattr(timezones, "_load", looked_up.append)
    load_zone("America/ABCDEFGHIJKLMN")
    assert looked_up == ["America/ABCDEFGHIJKLMN"]


def test_offsets_are_right() -> None:
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, tzinfo=UTC)
    assert winter.astimezone(load_zone("Europe/Zurich")).utcoffset() == timedelta(hours=1)
    assert summer.astimezone(load_zone("Europe/Zurich")).utcoffset() == timedelta(hours=2)
    kathmandu = winter.astimezone(load_zone("Asia/Kathmandu")).utcoffset()
    assert kathmandu == timedelta(hours=5, minutes=45)


def test_loads_from_the_tzdata_package_not_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host zoneinfo directory whose Europe/Zurich is really UTC: a loader that consulted the
    # host (zoneinfo.ZoneInfo's default search path) would now say Zurich is at +00:00.
    fake = tmp_path / "Europe" / "Zurich"
    fake.parent.mkdir()
    with resources.as_file(resources.files("tzdata.zoneinfo").joinpath("UTC")) as utc_file:
        shutil.copyfile(utc_file, fake)
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC)
    timezones._load.cache_clear()
    zoneinfo.reset_tzpath(to=[str(tmp_path)])
    try:
        trap = zoneinfo.ZoneInfo.no_cache("Europe/Zurich")
        assert winter.astimezone(trap).utcoffset() == timedelta(0)  # the trap works
        zone = load_zone("Europe/Zurich")
        assert winter.astimezone(zone).utcoffset() == timedelta(hours=1)
    finally:
        zoneinfo.reset_tzpath()
        timezones._load.cache_clear()


def tzdata_zone_names() -> list[str]:
    """The zones the pinned tzdata package ships (its own ``zones`` list)."""
    text = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_every_tzdata_zone_loads() -> None:
    names = tzdata_zone_names()
    assert len(names) > 500
    for name in names:
        assert load_zone(name).key == name
