"""Windowed tables (``table.tumbling``/``hopping``) through ``agent.test_context()``.

No broker: the tables' in-memory runtime, installed fresh for each test. Timestamps are
given to ``put`` in seconds, as Faust's test client takes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import agentlib as faust
from agentlib.tables import KeyNotCopartitioned
from agentlib.tables import runtime as runtimes
from agentlib.tables.shards import MemoryShard
from agentlib.tables.windows import HoppingWindow, TumblingWindow, WindowedTable


class PageView(faust.Record, namespace="tests.windows.PageView"):
    id: str
    user: str


class Click(faust.Record, namespace="tests.windows.Click"):
    page: str
    created: float


class Order(faust.Record, namespace="tests.windows.Order"):
    item: str
    placed: datetime


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[runtimes.LocalRuntime]:
    """Each test its own shards (the in-memory runtime is per process)."""
    before = runtimes.current()
    runtime = runtimes.LocalRuntime()
    runtimes.install(runtime)
    yield runtime
    runtimes.install(before)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def rows(table: WindowedTable) -> dict[tuple[Any, tuple[float, float]], Any]:
    """Every stored window row as ``{(key, (start, end)): value}``."""
    return {(key[0], tuple(key[1])): value for _, key, value in table._stored_items()}


# -- the window arithmetic, against Faust's own -------------------------------------

@pytest.mark.parametrize(("size", "step"), [(10, 10), (10, 5), (30, 10), (4, 1)])
def test_window_ranges_current_earliest_and_stale_match_faust(size: int, step: int) -> None:
    faust_windows = pytest.importorskip("faust.windows")
    theirs = faust_windows._PyHoppingWindow(size, step, expires=size)
    ours = HoppingWindow(size, step, expires=size)
    for tenth in range(0, 600, 7):
        ts = tenth / 10
        assert ours.ranges(ts) == theirs.ranges(ts), ts
        assert ours.current(ts) == theirs.current(ts), ts
        assert ours.earliest(ts) == theirs.earliest(ts), ts
        assert ours.delta(ts, 3) == theirs.delta(ts, 3), ts
        for end in (ts - 2 * size, ts - size, ts):
            assert ours.stale(end, ts) == theirs.stale(end, ts), (end, ts)


def test_window_sizes_take_seconds_or_timedelta_and_refuse_nonsense() -> None:
    assert TumblingWindow(timedelta(minutes=1), expires=timedelta(hours=1)).size == 60.0
    assert TumblingWindow(10, expires=timedelta(hours=1)).expires == 3600.0
    assert HoppingWindow(10, 5).ranges(12) == [(5.0, 14.9), (10.0, 19.9)]
    with pytest.raises(ValueError, match="positive"):
        TumblingWindow(0)
    with pytest.raises(TypeError, match="seconds"):
        HoppingWindow("10", 5)  # type: ignore[arg-type]


# -- Faust's windowed page-view example ----------------------------------------------

def test_page_views_counted_per_page_in_tumbling_windows_after_group_by() -> None:
    app = faust.App("windowed-page-views")
    page_view_topic = app.topic("page_views", value_type=PageView)
    page_views = app.Table("page_views", default=int).tumbling(10.0, expires=10.0)

    @app.agent(page_view_topic)
    async def count_page_views(views: faust.StreamT[PageView]) -> AsyncIterable[int]:
        async for view in views.group_by(PageView.id):
            page_views[view.id] += 1
            yield page_views[view.id].current()

    async def scenario() -> list[int]:
        async with count_page_views.test_context() as agent:
            seen = []
            for page, user, ts in [("home", "ann", 1.0), ("home", "bob", 2.5),
                                   ("about", "ann", 4.0), ("home", "cy", 9.0),
                                   ("home", "ann", 12.0)]:
                event = await agent.put(PageView(page, user), key=user, timestamp=ts)
                seen.append(agent.results[event.message.offset])
            return seen

    assert run(scenario()) == [1, 2, 1, 3, 1]
    assert rows(page_views.table) == {("home", (0.0, 9.9)): 3, ("about", (0.0, 9.9)): 1,
                                      ("home", (10.0, 19.9)): 1}


def test_hopping_window_counts_an_event_in_every_window_that_holds_it() -> None:
    app = faust.App("hopping-counts")
    topic = app.topic("clicks", value_type=Click)
    clicks = app.Table("clicks", default=int).hopping(10, 5)

    @app.agent(topic)
    async def count(stream: faust.StreamT[Click]) -> AsyncIterable[None]:
        async for click in stream:
            clicks[click.page] += 1
            yield None

    async def scenario() -> None:
        async with count.test_context() as agent:
            for ts in (3.0, 7.0, 12.0):
                await agent.put(Click("p", 0.0), key="p", timestamp=ts)

    run(scenario())
    assert rows(clicks.table) == {("p", (-5.0, 4.9)): 1, ("p", (0.0, 9.9)): 2,
                                  ("p", (5.0, 14.9)): 2, ("p", (10.0, 19.9)): 1}


# -- reading one window ---------------------------------------------------------------

def test_current_now_delta_and_value_pick_their_windows() -> None:
    app = faust.App("window-reads")
    topic = app.topic("reads", value_type=Click)
    counts = app.Table("reads", default=int).tumbling(10)

    @app.agent(topic)
    async def reader(stream: faust.StreamT[Click]) -> AsyncIterable[tuple[int, ...]]:
        async for click in stream:
            counts[click.page] += 1
            window_set = counts[click.page]
            yield (window_set.current(), window_set.now(), window_set.delta(10),
                   window_set.value())

    async def scenario() -> list[tuple[int, ...]]:
        async with reader.test_context() as agent:
            out = []
            for ts in (3.0, 5.0, 14.0, 25.0, 16.0):  # the last is late: now() is at 25
                event = await agent.put(Click("p", 0.0), key="p", timestamp=ts)
                out.append(agent.results[event.message.offset])
            return out

    assert run(scenario()) == [(1, 1, 0, 1), (2, 2, 0, 2), (1, 1, 2, 1), (1, 1, 1, 1),
                               (2, 1, 2, 2)]


def test_relative_to_field_picks_windows_by_the_value_not_the_record_time() -> None:
    app = faust.App("window-field")
    topic = app.topic("field-clicks", value_type=Click)
    by_created = app.Table("by_created", default=int).tumbling(10).relative_to_field(
        Click.created)

    @app.agent(topic)
    async def count(stream: faust.StreamT[Click]) -> AsyncIterable[tuple[int, int]]:
        async for click in stream:
            by_created[click.page] += 1
            yield by_created[click.page].value(), by_created[click.page].current()

    async def scenario() -> list[tuple[int, int]]:
        async with count.test_context() as agent:
            first = await agent.put(Click("p", 33.0), key="p", timestamp=101.0)
            second = await agent.put(Click("p", 35.0), key="p", timestamp=102.0)
            return [agent.results[first.message.offset], agent.results[second.message.offset]]

    assert run(scenario()) == [(1, 0), (2, 0)]  # current(): the record's 100s window
    assert rows(by_created.table) == {("p", (30.0, 39.9)): 2}


def test_relative_to_field_reads_a_datetime_field() -> None:
    app = faust.App("window-datetime")
    topic = app.topic("orders", value_type=Order)
    orders = app.Table("orders", default=int).tumbling(60).relative_to_field(Order.placed)

    @app.agent(topic)
    async def count(stream: faust.StreamT[Order]) -> AsyncIterable[None]:
        async for order in stream:
            orders[order.item] += 1
            yield None

    placed = datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)

    async def scenario() -> None:
        async with count.test_context() as agent:
            await agent.put(Order("tea", placed), key="tea", timestamp=5.0)

    run(scenario())
    start = placed.timestamp() - 30
    assert rows(orders.table) == {("tea", (start, start + 59.9)): 1}


def test_set_delete_contains_and_items_of_the_wrapper() -> None:
    app = faust.App("window-mapping")
    topic = app.topic("mapping", value_type=Click)
    latest = app.Table("latest").tumbling(10)
    seen: list[Any] = []

    @app.agent(topic)
    async def setter(stream: faust.StreamT[Click]) -> AsyncIterable[None]:
        async for click in stream:
            if click.created == 0.0:  # 0.0: delete the page
                del latest[click.page]
                seen.append(("gone" in latest, sorted(latest.keys())))
            else:
                latest[click.page] = click.created
                seen.append(("gone" in latest, dict(latest.items())))
            yield None

    async def scenario() -> None:
        async with setter.test_context() as agent:
            await agent.put(Click("gone", 1.5), key="gone", timestamp=1.0)
            await agent.put(Click("kept", 2.5), key="kept", timestamp=2.0)
            await agent.put(Click("gone", 0.0), key="gone", timestamp=3.0)

    run(scenario())
    assert seen == [(True, {"gone": 1.5}), (True, {"gone": 1.5, "kept": 2.5}),
                    (False, ["kept"])]
    assert list(latest) == ["kept"]
    assert len(latest) == 1


# -- expiry ---------------------------------------------------------------------------

def closing_app(name: str, closed: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """A tumbling(10, expires=10) count whose closed windows are appended to ``closed``."""
    app = faust.App(name)
    topic = app.topic(f"{name}-views", value_type=PageView)
    table = app.Table(f"{name}-counts", default=int,
                      on_window_close=lambda key, value: closed.append((key, value)))
    counts = table.tumbling(10, expires=10)

    @app.agent(topic)
    async def count(views: faust.StreamT[PageView]) -> AsyncIterable[None]:
        async for view in views:
            counts[view.id] += 1
            yield None

    return count, counts


def test_expiry_closes_each_window_once_with_its_final_value() -> None:
    closed: list[tuple[Any, Any]] = []
    count, counts = closing_app("expiring", closed)
    puts = [("a", 1.0), ("a", 2.0), ("b", 5.0), ("a", 12.0),
            ("b", 19.0),   # stream time 19: window 0 is not stale yet
            ("b", 21.0),   # 21: window [0, 9.9] ended before the window current at 11
            ("a", 3.0),    # late, for the closed window: dropped, not reopened
            ("b", 29.0), ("a", 31.0)]  # 31: window [10, 19.9] closes

    async def scenario() -> None:
        async with count.test_context() as agent:
            for page, ts in puts:
                await agent.put(PageView(page, "u"), key=page, timestamp=ts)
                if ts == 21.0:
                    assert sorted(closed) == [(("a", (0.0, 9.9)), 2), (("b", (0.0, 9.9)), 1)]

    run(scenario())
    assert sorted(closed) == [(("a", (0.0, 9.9)), 2), (("a", (10.0, 19.9)), 1),
                              (("b", (0.0, 9.9)), 1), (("b", (10.0, 19.9)), 1)]
    assert rows(counts.table) == {("b", (20.0, 29.9)): 2, ("a", (30.0, 39.9)): 1}


def test_expiry_closes_rows_this_process_did_not_write() -> None:
    """A shard that comes back (recovered, or from a previous owner) is indexed again,
    so its windows close too."""
    closed: list[tuple[Any, Any]] = []
    count, counts = closing_app("recovered", closed)
    table = counts.table

    async def scenario(ts: float) -> None:
        async with count.test_context() as agent:
            await agent.put(PageView("a", "u"), key="a", timestamp=ts)

    run(scenario(1.0))
    recovered = MemoryShard(0)
    for key, value in runtimes.current().shard(table, 0).items():
        recovered.write(key, value, None, None)
    recovered.write(table._encode_key(("z", (0.0, 9.9))), table.changelog_topic.encode_value(7),
                    None, None)
    moved = runtimes.LocalRuntime()
    moved._shards[(table.name, 0)] = recovered
    runtimes.install(moved)
    run(scenario(25.0))
    assert sorted(closed) == [(("a", (0.0, 9.9)), 1), (("z", (0.0, 9.9)), 7)]


def test_expiry_without_on_window_close_only_deletes() -> None:
    app = faust.App("expiring-quietly")
    topic = app.topic("quiet", value_type=PageView)
    counts = app.Table("quiet", default=int).hopping(10, 5, expires=timedelta(seconds=5))

    @app.agent(topic)
    async def count(views: faust.StreamT[PageView]) -> AsyncIterable[None]:
        async for view in views:
            counts[view.id] += 1
            yield None

    async def scenario() -> None:
        async with count.test_context() as agent:
            await agent.put(PageView("a", "u"), key="a", timestamp=6.0)
            await agent.put(PageView("a", "u"), key="a", timestamp=27.0)

    run(scenario())  # at 27 the window current 5s before starts at 20: (5, 14.9) is stale
    assert rows(counts.table) == {("a", (20.0, 29.9)): 1, ("a", (25.0, 34.9)): 1}


# -- Faust's rules ----------------------------------------------------------------------

def test_windowed_write_with_a_foreign_key_is_not_copartitioned() -> None:
    app = faust.App("window-copartition")
    topic = app.topic("foreign", value_type=PageView)
    counts = app.Table("foreign", default=int).tumbling(10, expires=10)

    @app.agent(topic)
    async def count(views: faust.StreamT[PageView]) -> AsyncIterable[None]:
        async for view in views:
            counts[view.id] += 1  # the record's key is the user, not the page
            yield None

    async def scenario() -> None:
        async with count.test_context() as agent:
            with pytest.raises(KeyNotCopartitioned, match="group_by"):
                await agent.put(PageView("home", "ann"), key="ann", timestamp=1.0)

    run(scenario())
    assert rows(counts.table) == {}


def test_windowed_write_outside_an_agent_is_refused() -> None:
    app = faust.App("window-outside")
    counts = app.Table("outside", default=int).tumbling(10)
    with pytest.raises(RuntimeError, match="outside"):
        counts["a"] += 1
    with pytest.raises(RuntimeError, match="outside of stream iteration"):
        counts["a"].current()


def test_an_async_on_window_close_is_awaited_on_the_loop() -> None:
    app = faust.App("closing-async")
    topic = app.topic("closing-async", value_type=PageView)
    closed: list[tuple[Any, Any]] = []

    async def on_close(key: Any, value: Any) -> None:
        await asyncio.sleep(0)
        closed.append((key, value))

    counts = app.Table("closing-async", default=int, on_window_close=on_close).tumbling(
        10, expires=10)

    @app.agent(topic)
    async def count(views: faust.StreamT[PageView]) -> AsyncIterable[None]:
        async for view in views:
            counts[view.id] += 1
            yield None

    async def scenario() -> None:
        async with count.test_context() as agent:
            await agent.put(PageView("a", "u"), key="a", timestamp=1.0)
            await agent.put(PageView("a", "u"), key="a", timestamp=30.0)
            for _ in range(3):
                await asyncio.sleep(0)

    run(scenario())
    assert closed == [(("a", (0.0, 9.9)), 1)]


def test_relative_to_field_needs_a_record_field() -> None:
    counts = faust.App("window-field-type").Table("t", default=int).tumbling(10)
    with pytest.raises(TypeError, match="Record field"):
        counts.relative_to_field("created")
