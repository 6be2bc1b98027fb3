"""Stream sampling by header stamp: ordering, staleness, watermark/frontier, tick release, rates."""

from __future__ import annotations

import pytest

from robot_learning.streams import NS_PER_S, Entry, RateMeter, StreamBuffer, StreamSampler, StreamSpec, TickGrid, to_ns

MS = 1_000_000


def test_buffer_orders_out_of_order_stamps_and_ignores_duplicates():
    b = StreamBuffer()
    for stamp in (30, 10, 20):
        assert b.push(Entry(stamp, stamp, f"v{stamp}"))
    assert not b.push(Entry(20, 99, "copy"))             # a re-sent message (same stamp) is ignored
    assert [b.at(t).value if b.at(t) else None for t in (5, 10, 15, 20, 29, 30, 99)] == \
        [None, "v10", "v10", "v20", "v20", "v30", "v30"]
    assert b.newest.stamp == 30
    b.prune(25)                                          # keeps the latest at or before 25
    assert len(b) == 2 and b.at(25).value == "v20"


def test_buffer_is_bounded():
    b = StreamBuffer(maxlen=3)
    for stamp in range(10):
        b.push(Entry(stamp, stamp, stamp))
    assert len(b) == 3 and b.at(100).value == 9 and b.at(6) is None


def test_sample_marks_stale_and_missing_streams_and_reports_skew():
    s = StreamSampler([StreamSpec("joints", max_age=20 * MS), StreamSpec("camera", max_age=60 * MS),
                       StreamSpec("cmd")])
    s.push("joints", 100 * MS, 0, "j")
    s.push("camera", 70 * MS, 0, "c")
    sample = s.sample(110 * MS)
    assert sample.missing == ("cmd",) and not sample.ok
    assert sample.ages() == {"joints": 10 * MS, "camera": 40 * MS}
    assert sample.skew == 30 * MS
    s.push("cmd", 0, 0, "a")                             # no max_age: never stale
    assert s.sample(110 * MS).ok
    late = s.sample(125 * MS)
    assert late.stale == ("joints",) and late.values == {"joints": "j", "camera": "c", "cmd": "a"}


def test_watermark_frontier_and_the_newest_complete_observation():
    s = StreamSampler([StreamSpec("a"), StreamSpec("b")])
    assert s.watermark() is None and s.frontier() is None and s.complete() is None
    s.push("a", 50, 0, "a50")
    assert s.watermark() is None and s.frontier() == 50
    s.push("b", 30, 0, "b30")
    assert s.watermark() == 30 and s.frontier() == 50
    partial = s.complete()                               # at 30, stream a has nothing yet
    assert partial.time == 30 and partial.missing == ("a",) and not partial.ok
    s.push("b", 50, 0, "b50")
    first = s.complete()
    assert first.time == 50 and first.values == {"a": "a50", "b": "b50"}
    assert s.complete(after=50) is None                  # already acted on: wait for the next one


def _grid(period=50 * MS, **kw):
    return TickGrid(period, timeout=kw.pop("timeout", 500 * MS), **kw)


def test_ticks_are_anchored_half_a_period_after_the_anchor_and_released_when_complete():
    s = StreamSampler([StreamSpec("obs"), StreamSpec("cmd")])
    g = _grid()
    assert g.due(s) == [] and not g.anchored
    g.anchor(1010 * MS)
    g.anchor(1050 * MS)                                  # later stamp: ignored
    g.anchor(1000 * MS)                                  # earlier stamp, out of order, before tick 0 is out: moves it
    assert g.first == 1025 * MS
    s.push("obs", 1000 * MS, 0, 0)
    s.push("cmd", 1000 * MS, 0, 0)
    assert g.due(s) == []                                # nothing after the tick yet: more may come
    s.push("obs", 1050 * MS, 0, 0)
    assert g.due(s) == []                                # the command for the tick may still come
    s.push("cmd", 1050 * MS, 0, 0)
    assert g.due(s) == [1025 * MS]
    assert g.due(s) == []                                # each tick once
    g.anchor(900 * MS)                                   # tick 0 is out: the grid stays
    assert g.first == 1025 * MS


def test_a_silent_stream_releases_ticks_after_the_timeout():
    s = StreamSampler([StreamSpec("obs"), StreamSpec("cam")])
    g = _grid(timeout=200 * MS)
    g.anchor(0)
    s.push("cam", 0, 0, 0)
    for k in range(6):
        s.push("obs", k * 50 * MS, 0, 0)
    assert g.due(s) == [25 * MS]                         # frontier 250 ms >= 25 + 200 ms


def test_lag_waits_for_reordered_stamps_and_until_releases_the_rest():
    s = StreamSampler([StreamSpec("obs")])
    g = _grid(lag=100 * MS)
    g.anchor(0)
    s.push("obs", 100 * MS, 0, 0)
    assert g.due(s) == []                                # 100 ms is not past 25 ms + the 100 ms lag
    s.push("obs", 130 * MS, 0, 0)
    assert g.due(s) == [25 * MS]
    assert g.until(130 * MS) == [75 * MS, 125 * MS]
    assert g.until(1000 * MS) == [175 * MS, 225 * MS, 275 * MS] + [t * MS for t in range(325, 1000, 50)]


def test_grid_rejects_bad_settings():
    with pytest.raises(ValueError, match="phase"):
        TickGrid(10, phase=1.0, timeout=100)
    with pytest.raises(ValueError, match="timeout"):
        TickGrid(10, timeout=10)


def test_rate_meter_counts_messages_in_the_window():
    r = RateMeter(["a", "b"], window=NS_PER_S)
    for k in range(40):
        r.add("a", k * 25 * MS)                          # 40 Hz over one second
    rates = r.rates(1000 * MS)
    assert rates["a"] == pytest.approx(40, abs=1) and rates["b"] == 0


def test_to_ns():
    assert to_ns(0.05) == 50 * MS and to_ns(1.5) == 1_500_000_000
