"""DST tables for ``next_cron_fire``: the ISC cron rule of docs/architecture.md#time-zones-and-dst.

* Fixed-hour schedules fire once per matching local wall time and date: a wall time skipped by
  spring-forward fires AT the transition instant, a repeated one fires at its FIRST occurrence.
* Wildcard or stepped hours follow elapsed time: every instant whose wall time matches fires.

Every expectation is worked out by hand from the tz rules and written as a literal UTC instant.
The transitions used (UTC instant: wall clock before -> after):

* America/New_York
  2026-03-08T07:00Z: 02:00 EST -> 03:00 EDT; 2026-11-01T06:00Z: 02:00 EDT -> 01:00 EST
* Europe/Berlin
  2026-03-29T01:00Z: 02:00 CET -> 03:00 CEST; 2026-10-25T01:00Z: 03:00 CEST -> 02:00 CET
* Australia/Lord_Howe (30-minute shift)
  2026-04-04T15:00Z: 02:00 +11 -> 01:30 +1030; 2026-10-03T15:30Z: 02:00 +1030 -> 02:30 +11
* America/Sao_Paulo (at local midnight)
  2018-02-18T02:00Z: 00:00 -02 -> 23:00 -03 (Feb 17); 2018-11-04T03:00Z: 00:00 -03 -> 01:00 -02
* Australia/Sydney
  2026-04-04T16:00Z: 03:00 AEDT -> 02:00 AEST; 2026-10-03T16:00Z: 02:00 AEST -> 03:00 AEDT
* Pacific/Auckland
  2026-04-04T14:00Z: 03:00 NZDT -> 02:00 NZST; 2026-09-26T14:00Z: 02:00 NZST -> 03:00 NZDT
* Antarctica/Troll (two-hour shift)
  2026-03-29T01:00Z: 01:00 +00 -> 03:00 +02; 2026-10-25T01:00Z: 03:00 +02 -> 01:00 +00
* Pacific/Chatham (+12:45 / +13:45)
  2026-04-04T14:00Z: 03:45 +1345 -> 02:45 +1245; 2026-09-26T14:00Z: 02:45 +1245 -> 03:45 +1345
* Pacific/Apia (a whole day skipped)
  2011-12-30T10:00Z: 2011-12-29 24:00 -10 -> 2011-12-31 00:00 +14
* Africa/Casablanca (Ramadan)
  2026-02-15T02:00Z: 03:00 +01 -> 02:00 +00; 2026-03-22T02:00Z: 02:00 +00 -> 03:00 +01
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nightshift.cron import next_cron_fire, parse_cron
from nightshift.timezones import load_zone

SEED = "ns/name"  # hashes "H" in the minute field to 26 (asserted below)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(value: datetime) -> str:
    assert value.tzinfo is UTC
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def fires(expr: str, zone: str, after: str, count: int) -> list[str]:
    cron = parse_cron(expr, seed=SEED)
    tz = load_zone(zone)
    t = utc(after)
    out = []
    for _ in range(count):
        t = next_cron_fire(cron, tz, t)
        out.append(rfc3339(t))
    return out


def fires_between(expr: str, zone: str, start: str, end: str) -> list[str]:
    """All fires in [start, end)."""
    cron = parse_cron(expr, seed=SEED)
    tz = load_zone(zone)
    t = utc(start) - timedelta(seconds=1)
    stop = utc(end)
    out = []
    while True:
        t = next_cron_fire(cron, tz, t)
        if t >= stop:
            return out
        out.append(rfc3339(t))


def test_seed_hashes_h_minute_to_26() -> None:
    # The H cases below are written for this minute.
    assert parse_cron("H 2 * * *", seed=SEED).minutes == (26,)


SEQUENCES = [
    # ---------------- America/New_York, spring forward 2026-03-08 (02:00-02:59 skipped) -------
    (
        "ny-spring-0230",
        "America/New_York",
        "30 2 * * *",
        "2026-03-07T00:00:00Z",
        ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
    ),
    (
        "ny-spring-0200",
        "America/New_York",
        "0 2 * * *",
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"],
    ),
    (
        "ny-spring-0259",
        "America/New_York",
        "59 2 * * *",
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:59:00Z"],
    ),
    (
        "ny-spring-0159",
        "America/New_York",
        "59 1 * * *",
        "2026-03-07T12:00:00Z",
        ["2026-03-08T06:59:00Z", "2026-03-09T05:59:00Z"],
    ),
    (
        "ny-spring-0300",
        "America/New_York",
        "0 3 * * *",
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T07:00:00Z"],
    ),
    (
        "ny-spring-H",
        "America/New_York",
        "H 2 * * *",
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:26:00Z"],
    ),
    (
        "ny-spring-just-before",
        "America/New_York",
        "30 2 * * *",
        "2026-03-08T06:59:59Z",
        ["2026-03-08T07:00:00Z"],
    ),
    (
        "ny-spring-on-transition",
        "America/New_York",
        "30 2 * * *",
        "2026-03-08T07:00:00Z",
        ["2026-03-09T06:30:00Z"],
    ),
    # Several skipped wall times share the transition instant: one fire at that instant.
    (
        "ny-spring-two-skipped",
        "America/New_York",
        "0,30 2 * * *",
        "2026-03-08T00:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z", "2026-03-09T06:30:00Z"],
    ),
    (
        "ny-spring-skipped-and-0300",
        "America/New_York",
        "0 2,3 * * *",
        "2026-03-08T00:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z", "2026-03-09T07:00:00Z"],
    ),
    (
        "ny-spring-minute-step-fixed-hour",
        "America/New_York",
        "*/20 2 * * *",
        "2026-03-07T12:00:00Z",
        [
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:00:00Z",
            "2026-03-09T06:20:00Z",
            "2026-03-09T06:40:00Z",
        ],
    ),
    (
        "ny-spring-hourly",
        "America/New_York",
        "0 * * * *",
        "2026-03-08T04:30:00Z",
        [
            "2026-03-08T05:00:00Z",
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z",
        ],
    ),
    (
        "ny-spring-half-hourly",
        "America/New_York",
        "*/30 * * * *",
        "2026-03-08T06:00:00Z",
        ["2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"],
    ),
    # Stepped hour: 02:30 simply does not occur.
    (
        "ny-spring-stepped",
        "America/New_York",
        "30 */2 * * *",
        "2026-03-08T05:00:00Z",
        ["2026-03-08T05:30:00Z", "2026-03-08T08:30:00Z"],
    ),
    # ---------------- America/New_York, fall back 2026-11-01 (01:00-01:59 twice) ---------------
    (
        "ny-fall-0130",
        "America/New_York",
        "30 1 * * *",
        "2026-10-31T00:00:00Z",
        ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    ),
    (
        "ny-fall-0100",
        "America/New_York",
        "0 1 * * *",
        "2026-10-31T12:00:00Z",
        ["2026-11-01T05:00:00Z", "2026-11-02T06:00:00Z"],
    ),
    (
        "ny-fall-0159",
        "America/New_York",
        "59 1 * * *",
        "2026-10-31T12:00:00Z",
        ["2026-11-01T05:59:00Z", "2026-11-02T06:59:00Z"],
    ),
    (
        "ny-fall-0200",
        "America/New_York",
        "0 2 * * *",
        "2026-10-31T12:00:00Z",
        ["2026-11-01T07:00:00Z", "2026-11-02T07:00:00Z"],
    ),
    (
        "ny-fall-0000",
        "America/New_York",
        "0 0 * * *",
        "2026-10-31T12:00:00Z",
        ["2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"],
    ),
    (
        "ny-fall-H",
        "America/New_York",
        "H 1 * * *",
        "2026-10-31T12:00:00Z",
        ["2026-11-01T05:26:00Z", "2026-11-02T06:26:00Z"],
    ),
    (
        "ny-fall-before-first",
        "America/New_York",
        "30 1 * * *",
        "2026-11-01T05:29:59Z",
        ["2026-11-01T05:30:00Z"],
    ),
    (
        "ny-fall-between-passes",
        "America/New_York",
        "30 1 * * *",
        "2026-11-01T05:45:00Z",
        ["2026-11-02T06:30:00Z"],
    ),
    (
        "ny-fall-in-second-pass",
        "America/New_York",
        "30 1 * * *",
        "2026-11-01T06:10:00Z",
        ["2026-11-02T06:30:00Z"],
    ),
    (
        "ny-fall-on-transition",
        "America/New_York",
        "30 1 * * *",
        "2026-11-01T06:00:00Z",
        ["2026-11-02T06:30:00Z"],
    ),
    (
        "ny-fall-1-and-13",
        "America/New_York",
        "0 1,13 * * *",
        "2026-10-31T12:00:00Z",
        [
            "2026-10-31T17:00:00Z",
            "2026-11-01T05:00:00Z",
            "2026-11-01T18:00:00Z",
            "2026-11-02T06:00:00Z",
        ],
    ),
    (
        "ny-fall-minute-step-fixed-hour",
        "America/New_York",
        "*/15 1 * * *",
        "2026-11-01T04:59:00Z",
        [
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:15:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T05:45:00Z",
            "2026-11-02T06:00:00Z",
        ],
    ),
    (
        "ny-fall-hourly",
        "America/New_York",
        "0 * * * *",
        "2026-11-01T04:30:00Z",
        ["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"],
    ),
    (
        "ny-fall-half-hourly",
        "America/New_York",
        "*/30 * * * *",
        "2026-11-01T05:00:00Z",
        [
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z",
        ],
    ),
    (
        "ny-fall-hourly-macro",
        "America/New_York",
        "@hourly",
        "2026-11-01T04:30:00Z",
        ["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"],
    ),
    # Stepped hour: 01:30 fires twice, once per pass.
    (
        "ny-fall-stepped",
        "America/New_York",
        "30 1-23/2 * * *",
        "2026-11-01T04:00:00Z",
        ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-01T08:30:00Z"],
    ),
    # ---------------- Europe/Berlin ----------------------------------------------------------
    (
        "berlin-spring-0230",
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-28T00:00:00Z",
        ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    ),
    (
        "berlin-spring-0300",
        "Europe/Berlin",
        "0 3 * * *",
        "2026-03-28T12:00:00Z",
        ["2026-03-29T01:00:00Z", "2026-03-30T01:00:00Z"],
    ),
    (
        "berlin-spring-hourly",
        "Europe/Berlin",
        "0 * * * *",
        "2026-03-28T23:30:00Z",
        ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"],
    ),
    (
        "berlin-fall-0230",
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-24T00:00:00Z",
        ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    ),
    (
        "berlin-fall-0200",
        "Europe/Berlin",
        "0 2 * * *",
        "2026-10-24T12:00:00Z",
        ["2026-10-25T00:00:00Z", "2026-10-26T01:00:00Z"],
    ),
    (
        "berlin-fall-0300",
        "Europe/Berlin",
        "0 3 * * *",
        "2026-10-24T12:00:00Z",
        ["2026-10-25T02:00:00Z", "2026-10-26T02:00:00Z"],
    ),
    (
        "berlin-fall-hourly",
        "Europe/Berlin",
        "0 * * * *",
        "2026-10-24T23:30:00Z",
        ["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"],
    ),
    # ---------------- Australia/Lord_Howe (30-minute shift) ----------------------------------
    (
        "lordhowe-fall-0145",
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04T00:00:00Z",
        ["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
    ),
    (
        "lordhowe-fall-0130",
        "Australia/Lord_Howe",
        "30 1 * * *",
        "2026-04-04T00:00:00Z",
        ["2026-04-04T14:30:00Z", "2026-04-05T15:00:00Z"],
    ),
    (
        "lordhowe-fall-0115",
        "Australia/Lord_Howe",
        "15 1 * * *",
        "2026-04-04T00:00:00Z",
        ["2026-04-04T14:15:00Z", "2026-04-05T14:45:00Z"],
    ),
    (
        "lordhowe-fall-0200",
        "Australia/Lord_Howe",
        "0 2 * * *",
        "2026-04-04T12:00:00Z",
        ["2026-04-04T15:30:00Z", "2026-04-05T15:30:00Z"],
    ),
    (
        "lordhowe-fall-hourly",
        "Australia/Lord_Howe",
        "0 * * * *",
        "2026-04-04T13:30:00Z",
        ["2026-04-04T14:00:00Z", "2026-04-04T15:30:00Z", "2026-04-04T16:30:00Z"],
    ),
    (
        "lordhowe-fall-half-hourly",
        "Australia/Lord_Howe",
        "*/30 * * * *",
        "2026-04-04T13:45:00Z",
        [
            "2026-04-04T14:00:00Z",
            "2026-04-04T14:30:00Z",
            "2026-04-04T15:00:00Z",
            "2026-04-04T15:30:00Z",
            "2026-04-04T16:00:00Z",
        ],
    ),
    (
        "lordhowe-spring-0215",
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-03T00:00:00Z",
        ["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"],
    ),
    (
        "lordhowe-spring-0200",
        "Australia/Lord_Howe",
        "0 2 * * *",
        "2026-10-03T00:00:00Z",
        ["2026-10-03T15:30:00Z", "2026-10-04T15:00:00Z"],
    ),
    (
        "lordhowe-spring-0230",
        "Australia/Lord_Howe",
        "30 2 * * *",
        "2026-10-03T00:00:00Z",
        ["2026-10-03T15:30:00Z", "2026-10-04T15:30:00Z"],
    ),
    (
        "lordhowe-spring-0245",
        "Australia/Lord_Howe",
        "45 2 * * *",
        "2026-10-03T00:00:00Z",
        ["2026-10-03T15:45:00Z", "2026-10-04T15:45:00Z"],
    ),
    (
        "lordhowe-spring-hourly",
        "Australia/Lord_Howe",
        "0 * * * *",
        "2026-10-03T13:00:00Z",
        [
            "2026-10-03T13:30:00Z",
            "2026-10-03T14:30:00Z",
            "2026-10-03T16:00:00Z",
            "2026-10-03T17:00:00Z",
        ],
    ),
    (
        "lordhowe-spring-half-hourly",
        "Australia/Lord_Howe",
        "*/30 * * * *",
        "2026-10-03T14:15:00Z",
        [
            "2026-10-03T14:30:00Z",
            "2026-10-03T15:00:00Z",
            "2026-10-03T15:30:00Z",
            "2026-10-03T16:00:00Z",
        ],
    ),
    # ---------------- America/Sao_Paulo 2018 (transitions at local midnight) -----------------
    (
        "saopaulo-spring-midnight",
        "America/Sao_Paulo",
        "0 0 * * *",
        "2018-11-02T12:00:00Z",
        ["2018-11-03T03:00:00Z", "2018-11-04T03:00:00Z", "2018-11-05T02:00:00Z"],
    ),
    (
        "saopaulo-spring-daily-macro",
        "America/Sao_Paulo",
        "@daily",
        "2018-11-02T12:00:00Z",
        ["2018-11-03T03:00:00Z", "2018-11-04T03:00:00Z", "2018-11-05T02:00:00Z"],
    ),
    (
        "saopaulo-spring-0030",
        "America/Sao_Paulo",
        "30 0 * * *",
        "2018-11-03T12:00:00Z",
        ["2018-11-04T03:00:00Z", "2018-11-05T02:30:00Z"],
    ),
    (
        "saopaulo-spring-0100",
        "America/Sao_Paulo",
        "0 1 * * *",
        "2018-11-03T12:00:00Z",
        ["2018-11-04T03:00:00Z", "2018-11-05T03:00:00Z"],
    ),
    (
        "saopaulo-spring-hourly",
        "America/Sao_Paulo",
        "0 * * * *",
        "2018-11-04T01:30:00Z",
        ["2018-11-04T02:00:00Z", "2018-11-04T03:00:00Z", "2018-11-04T04:00:00Z"],
    ),
    (
        "saopaulo-fall-2330",
        "America/Sao_Paulo",
        "30 23 * * *",
        "2018-02-16T12:00:00Z",
        ["2018-02-17T01:30:00Z", "2018-02-18T01:30:00Z", "2018-02-19T02:30:00Z"],
    ),
    (
        "saopaulo-fall-2300",
        "America/Sao_Paulo",
        "0 23 * * *",
        "2018-02-17T12:00:00Z",
        ["2018-02-18T01:00:00Z", "2018-02-19T02:00:00Z"],
    ),
    (
        "saopaulo-fall-2330-second-pass",
        "America/Sao_Paulo",
        "30 23 * * *",
        "2018-02-18T02:15:00Z",
        ["2018-02-19T02:30:00Z"],
    ),
    (
        "saopaulo-fall-midnight",
        "America/Sao_Paulo",
        "0 0 * * *",
        "2018-02-17T12:00:00Z",
        ["2018-02-18T03:00:00Z", "2018-02-19T03:00:00Z"],
    ),
    (
        "saopaulo-fall-hourly",
        "America/Sao_Paulo",
        "0 * * * *",
        "2018-02-18T00:30:00Z",
        ["2018-02-18T01:00:00Z", "2018-02-18T02:00:00Z", "2018-02-18T03:00:00Z"],
    ),
    # ---------------- Australia/Sydney, Pacific/Auckland (southern hemisphere) ---------------
    (
        "sydney-spring-0230",
        "Australia/Sydney",
        "30 2 * * *",
        "2026-10-02T00:00:00Z",
        ["2026-10-02T16:30:00Z", "2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"],
    ),
    (
        "sydney-spring-hourly",
        "Australia/Sydney",
        "0 * * * *",
        "2026-10-03T14:30:00Z",
        ["2026-10-03T15:00:00Z", "2026-10-03T16:00:00Z", "2026-10-03T17:00:00Z"],
    ),
    (
        "sydney-fall-0230",
        "Australia/Sydney",
        "30 2 * * *",
        "2026-04-04T00:00:00Z",
        ["2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"],
    ),
    (
        "sydney-fall-hourly",
        "Australia/Sydney",
        "0 * * * *",
        "2026-04-04T14:30:00Z",
        ["2026-04-04T15:00:00Z", "2026-04-04T16:00:00Z", "2026-04-04T17:00:00Z"],
    ),
    (
        "auckland-spring-0230",
        "Pacific/Auckland",
        "30 2 * * *",
        "2026-09-26T00:00:00Z",
        ["2026-09-26T14:00:00Z", "2026-09-27T13:30:00Z"],
    ),
    (
        "auckland-fall-0230",
        "Pacific/Auckland",
        "30 2 * * *",
        "2026-04-04T00:00:00Z",
        ["2026-04-04T13:30:00Z", "2026-04-05T14:30:00Z"],
    ),
    # ---------------- two-hour, 45-minute-offset and whole-day transitions ---------------------
    (
        "troll-spring-0130",
        "Antarctica/Troll",
        "30 1 * * *",
        "2026-03-28T12:00:00Z",
        ["2026-03-29T01:00:00Z", "2026-03-29T23:30:00Z"],
    ),
    (
        "troll-spring-0230",
        "Antarctica/Troll",
        "30 2 * * *",
        "2026-03-28T12:00:00Z",
        ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    ),
    (
        "troll-fall-0130",
        "Antarctica/Troll",
        "30 1 * * *",
        "2026-10-24T12:00:00Z",
        ["2026-10-24T23:30:00Z", "2026-10-26T01:30:00Z"],
    ),
    (
        "chatham-spring-0300",
        "Pacific/Chatham",
        "0 3 * * *",
        "2026-09-26T00:00:00Z",
        ["2026-09-26T14:00:00Z", "2026-09-27T13:15:00Z"],
    ),
    (
        "chatham-fall-0300",
        "Pacific/Chatham",
        "0 3 * * *",
        "2026-04-04T00:00:00Z",
        ["2026-04-04T13:15:00Z", "2026-04-05T14:15:00Z"],
    ),
    (
        "apia-skipped-day-noon",
        "Pacific/Apia",
        "0 12 * * *",
        "2011-12-29T12:00:00Z",
        ["2011-12-29T22:00:00Z", "2011-12-30T10:00:00Z", "2011-12-30T22:00:00Z"],
    ),
    (
        "apia-skipped-day-hourly",
        "Pacific/Apia",
        "0 * * * *",
        "2011-12-30T08:30:00Z",
        ["2011-12-30T09:00:00Z", "2011-12-30T10:00:00Z", "2011-12-30T11:00:00Z"],
    ),
    (
        "casablanca-fall-0230",
        "Africa/Casablanca",
        "30 2 * * *",
        "2026-02-14T12:00:00Z",
        ["2026-02-15T01:30:00Z", "2026-02-16T02:30:00Z"],
    ),
    (
        "casablanca-spring-0230",
        "Africa/Casablanca",
        "30 2 * * *",
        "2026-03-21T12:00:00Z",
        ["2026-03-22T02:00:00Z", "2026-03-23T01:30:00Z"],
    ),
]


@pytest.mark.parametrize(
    ("zone", "expr", "after", "expected"),
    [case[1:] for case in SEQUENCES],
    ids=[case[0] for case in SEQUENCES],
)
def test_fire_sequence(zone: str, expr: str, after: str, expected: list[str]) -> None:
    assert fires(expr, zone, after, len(expected)) == expected


COUNTS = [
    # (id, zone, expr, local day as a UTC half-open interval [start, end), fires in it)
    (
        "ny-normal-hourly",
        "America/New_York",
        "0 * * * *",
        "2026-03-07T05:00:00Z",
        "2026-03-08T05:00:00Z",
        24,
    ),
    (
        "ny-spring-hourly",
        "America/New_York",
        "0 * * * *",
        "2026-03-08T05:00:00Z",
        "2026-03-09T04:00:00Z",
        23,
    ),
    (
        "ny-fall-hourly",
        "America/New_York",
        "0 * * * *",
        "2026-11-01T04:00:00Z",
        "2026-11-02T05:00:00Z",
        25,
    ),
    (
        "ny-spring-half-hourly",
        "America/New_York",
        "*/30 * * * *",
        "2026-03-08T05:00:00Z",
        "2026-03-09T04:00:00Z",
        46,
    ),
    (
        "ny-fall-half-hourly",
        "America/New_York",
        "*/30 * * * *",
        "2026-11-01T04:00:00Z",
        "2026-11-02T05:00:00Z",
        50,
    ),
    (
        "ny-spring-even-hours",
        "America/New_York",
        "0 */2 * * *",
        "2026-03-08T05:00:00Z",
        "2026-03-09T04:00:00Z",
        11,
    ),
    (
        "ny-fall-even-hours",
        "America/New_York",
        "0 */2 * * *",
        "2026-11-01T04:00:00Z",
        "2026-11-02T05:00:00Z",
        12,
    ),
    (
        "ny-fall-odd-hours",
        "America/New_York",
        "0 1-23/2 * * *",
        "2026-11-01T04:00:00Z",
        "2026-11-02T05:00:00Z",
        13,
    ),
    (
        "ny-spring-fixed",
        "America/New_York",
        "30 2 * * *",
        "2026-03-08T05:00:00Z",
        "2026-03-09T04:00:00Z",
        1,
    ),
    (
        "ny-fall-fixed",
        "America/New_York",
        "30 1 * * *",
        "2026-11-01T04:00:00Z",
        "2026-11-02T05:00:00Z",
        1,
    ),
    (
        "ny-fall-fixed-minute-wildcard",
        "America/New_York",
        "* 1 * * *",
        "2026-11-01T04:00:00Z",
        "2026-11-02T05:00:00Z",
        60,
    ),
    (
        "ny-spring-fixed-minute-wildcard",
        "America/New_York",
        "* 2 * * *",
        "2026-03-08T05:00:00Z",
        "2026-03-09T04:00:00Z",
        1,
    ),
    (
        "berlin-spring-hourly",
        "Europe/Berlin",
        "0 * * * *",
        "2026-03-28T23:00:00Z",
        "2026-03-29T22:00:00Z",
        23,
    ),
    (
        "berlin-fall-hourly",
        "Europe/Berlin",
        "0 * * * *",
        "2026-10-24T22:00:00Z",
        "2026-10-25T23:00:00Z",
        25,
    ),
    (
        "berlin-fall-fixed",
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-24T22:00:00Z",
        "2026-10-25T23:00:00Z",
        1,
    ),
    (
        "lordhowe-spring-hourly",
        "Australia/Lord_Howe",
        "0 * * * *",
        "2026-10-03T13:30:00Z",
        "2026-10-04T13:00:00Z",
        23,
    ),
    (
        "lordhowe-spring-half-hourly",
        "Australia/Lord_Howe",
        "*/30 * * * *",
        "2026-10-03T13:30:00Z",
        "2026-10-04T13:00:00Z",
        47,
    ),
    (
        "lordhowe-fall-hourly",
        "Australia/Lord_Howe",
        "0 * * * *",
        "2026-04-04T13:00:00Z",
        "2026-04-05T13:30:00Z",
        24,
    ),
    (
        "lordhowe-fall-half-hourly",
        "Australia/Lord_Howe",
        "*/30 * * * *",
        "2026-04-04T13:00:00Z",
        "2026-04-05T13:30:00Z",
        49,
    ),
    (
        "lordhowe-fall-fixed",
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04T13:00:00Z",
        "2026-04-05T13:30:00Z",
        1,
    ),
    (
        "saopaulo-spring-hourly",
        "America/Sao_Paulo",
        "0 * * * *",
        "2018-11-04T03:00:00Z",
        "2018-11-05T02:00:00Z",
        23,
    ),
    (
        "saopaulo-spring-daily",
        "America/Sao_Paulo",
        "0 0 * * *",
        "2018-11-04T03:00:00Z",
        "2018-11-05T02:00:00Z",
        1,
    ),
    (
        "saopaulo-fall-hourly",
        "America/Sao_Paulo",
        "0 * * * *",
        "2018-02-17T02:00:00Z",
        "2018-02-18T03:00:00Z",
        25,
    ),
    (
        "saopaulo-after-fall-hourly",
        "America/Sao_Paulo",
        "0 * * * *",
        "2018-02-18T03:00:00Z",
        "2018-02-19T03:00:00Z",
        24,
    ),
    (
        "saopaulo-fall-fixed",
        "America/Sao_Paulo",
        "30 23 * * *",
        "2018-02-17T02:00:00Z",
        "2018-02-18T03:00:00Z",
        1,
    ),
    (
        "sydney-spring-hourly",
        "Australia/Sydney",
        "0 * * * *",
        "2026-10-03T14:00:00Z",
        "2026-10-04T13:00:00Z",
        23,
    ),
    (
        "sydney-fall-hourly",
        "Australia/Sydney",
        "0 * * * *",
        "2026-04-04T13:00:00Z",
        "2026-04-05T14:00:00Z",
        25,
    ),
    (
        "auckland-spring-hourly",
        "Pacific/Auckland",
        "0 * * * *",
        "2026-09-26T12:00:00Z",
        "2026-09-27T11:00:00Z",
        23,
    ),
    (
        "auckland-fall-hourly",
        "Pacific/Auckland",
        "0 * * * *",
        "2026-04-04T11:00:00Z",
        "2026-04-05T12:00:00Z",
        25,
    ),
    (
        "troll-spring-hourly",
        "Antarctica/Troll",
        "0 * * * *",
        "2026-03-29T00:00:00Z",
        "2026-03-29T22:00:00Z",
        22,
    ),
    (
        "troll-fall-hourly",
        "Antarctica/Troll",
        "0 * * * *",
        "2026-10-24T22:00:00Z",
        "2026-10-26T00:00:00Z",
        26,
    ),
    (
        "chatham-spring-hourly",
        "Pacific/Chatham",
        "0 * * * *",
        "2026-09-26T11:15:00Z",
        "2026-09-27T10:15:00Z",
        23,
    ),
    (
        "chatham-fall-hourly",
        "Pacific/Chatham",
        "0 * * * *",
        "2026-04-04T10:15:00Z",
        "2026-04-05T11:15:00Z",
        25,
    ),
]


@pytest.mark.parametrize(
    ("zone", "expr", "start", "end", "count"),
    [case[1:] for case in COUNTS],
    ids=[case[0] for case in COUNTS],
)
def test_fires_per_local_day(zone: str, expr: str, start: str, end: str, count: int) -> None:
    assert len(fires_between(expr, zone, start, end)) == count


def test_ny_fall_back_hourly_full_day() -> None:
    expected = [f"2026-11-01T{h:02d}:00:00Z" for h in range(4, 24)] + [
        f"2026-11-02T{h:02d}:00:00Z" for h in range(5)
    ]
    got = fires_between(
        "0 * * * *", "America/New_York", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"
    )
    assert got == expected


def test_ny_spring_forward_hourly_full_day() -> None:
    expected = [f"2026-03-08T{h:02d}:00:00Z" for h in range(5, 24)] + [
        f"2026-03-09T{h:02d}:00:00Z" for h in range(4)
    ]
    got = fires_between(
        "0 * * * *", "America/New_York", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"
    )
    assert got == expected


@pytest.mark.parametrize(
    ("expr", "start", "end", "expected"),
    [
        pytest.param(
            "30 2 * * *",
            "2026-03-01T00:00:00Z",
            "2026-03-12T00:00:00Z",
            [f"2026-03-{d:02d}T07:30:00Z" for d in range(1, 8)]
            + ["2026-03-08T07:00:00Z"]
            + [f"2026-03-{d:02d}T06:30:00Z" for d in range(9, 12)],
            id="spring-week",
        ),
        pytest.param(
            "30 1 * * *",
            "2026-10-28T00:00:00Z",
            "2026-11-05T00:00:00Z",
            [f"2026-10-{d:02d}T05:30:00Z" for d in range(28, 32)]
            + ["2026-11-01T05:30:00Z"]
            + [f"2026-11-{d:02d}T06:30:00Z" for d in range(2, 5)],
            id="fall-week",
        ),
    ],
)
def test_ny_daily_across_a_week(expr: str, start: str, end: str, expected: list[str]) -> None:
    assert fires_between(expr, "America/New_York", start, end) == expected
