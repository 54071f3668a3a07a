"""The guide's examples (examples/) run unchanged on agentlib, in memory and typed.

In memory: each agent through ``test_context`` (no broker). Typed: ``mypy --strict``
accepts them as written in the guide's "Static types" style. The same examples
against a real broker (sinks to topics and agents, client-mode ``ask`` from a
command) are in ``test_examples_kafka.py``.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import subprocess
import sys
import types
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import agentlib
from agentlib import naming
from examples import agent as agent_example
from examples import concurrency, groupby, page_views, pow2, quickstart, sinks, word_count

ROOT = Path(__file__).resolve().parent.parent


def test_examples_pass_mypy_strict():
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "examples/"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_adding_adds_what_it_is_given():
    async def run() -> dict[int, object]:
        async with agent_example.adding.test_context() as agent:
            event = await agent.put(agent_example.Add(a=4, b=8))
            assert event.value == agent_example.Add(a=4, b=8)
            await agent.put(agent_example.Add(a=2, b=2))
            return agent.results

    assert asyncio.run(run()) == {0: 12, 1: 4}


def test_adding_reads_the_adding_topic_and_send_value_is_a_command():
    assert agent_example.adding.topic_names() == ["adding"]
    assert agent_example.app.id == "agent-example"
    assert "send_value" in agent_example.app.commands


def test_function_and_async_function_sinks_see_every_yield(capsys: pytest.CaptureFixture[str]):
    async def run() -> tuple[dict[int, object], dict[int, object]]:
        async with sinks.myagent.test_context() as plain:
            await plain.put(3)
        async with sinks.myagent_async_sink.test_context() as awaited:
            await awaited.put(5)
        return plain.results, awaited.results

    assert asyncio.run(run()) == ({0: 6}, {0: 10})
    assert capsys.readouterr().out.splitlines() == ["AGENT YIELD: 6", "AGENT YIELD: 10"]


def test_group_by_repartitions_through_the_named_topic():
    assert "examples.groupby.stream-groupby-transfers_by_account-repartition" in \
        groupby.stream.topic_names()
    transfers = [groupby.BankTransfer(account_id=a, amount=n)
                 for n, a in enumerate(["acc-1", "acc-2", "acc-1"])]

    async def run() -> dict[int, object]:
        async with groupby.stream.test_context() as agent:
            for transfer in transfers:
                await agent.put(transfer)
            return agent.results

    assert asyncio.run(run()) == dict(enumerate(transfers))  # keyed by put order


def test_word_count_and_page_views_count_in_memory_tables():
    """The table examples in ``test_context``: tables in memory, no broker (their run
    under agentd on Kafka is in ``test_examples_tables_kafka.py``)."""
    words = ["the", "fox", "the", "dog", "the"]
    pages = ["home", "about", "home"]

    async def run() -> tuple[dict[str, int], dict[str, int]]:
        async with word_count.count_words.test_context() as agent:
            for word in words:
                await agent.put(word, key=word)
        async with page_views.count_page_views.test_context() as agent:
            for page in pages:
                await agent.put(page_views.PageView(id=page, user="u"), key=page)
        views: Counter[str] = Counter()
        for (page, _window), count in page_views.page_views.table.items():
            views[page] += count  # summed over windows: a minute may turn meanwhile
        return dict(word_count.word_counts.items()), dict(views)

    assert asyncio.run(run()) == ({"the": 3, "fox": 1, "dog": 1}, {"home": 2, "about": 1})


def test_concurrent_news_importer_stores_articles_with_parsed_dates():
    published = datetime(2024, 5, 17, 10, 30, tzinfo=UTC)

    async def run() -> object:
        async with concurrency.imports_news.test_context() as agent:
            event = await agent.put(concurrency.Article(url="https://e.x/1",
                                                        date_published=published))
            assert agent.results == {0: "https://e.x/1"}
            return event.value.date_published

    assert asyncio.run(run()) == published
    assert concurrency.imports_news.concurrency == 10
    assert concurrency.article_store["https://e.x/1"] == "<html>https://e.x/1</html>"


def test_pow2_squares():
    async def run() -> dict[int, object]:
        async with pow2.pow2.test_context() as agent:
            for n in pow2.NUMBERS:
                await agent.put(n)
            return agent.results

    assert asyncio.run(run()) == {i: n * n for i, n in enumerate(pow2.NUMBERS)}


def test_quickstart_prints_each_sum(capsys: pytest.CaptureFixture[str]):
    async def run() -> dict[int, object]:
        async with quickstart.adding.test_context() as agent:
            await agent.put(quickstart.Add(a=40, b=2))
            return agent.results

    assert asyncio.run(run()) == {0: 42}
    assert capsys.readouterr().out == "40 + 2 = 42\n"
    assert [timer.seconds for timer in quickstart.app.timers] == [1.0]


@pytest.mark.parametrize("spec_name, expected", [("examples.pow2", "examples.pow2"),
                                                  (None, "examples.pow2")])
def test_an_example_run_as_main_keeps_its_agent_and_record_names(monkeypatch, spec_name,
                                                                expected):
    """``python -m examples.pow2`` (a spec) and ``python examples/pow2.py`` (a file in a
    package) name things as the imported module does, like Faust, so the client asks
    the topic the workers read."""
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(ROOT / "examples" / "pow2.py")
    fake_main.__spec__ = (importlib.machinery.ModuleSpec(spec_name, None)
                          if spec_name else None)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    assert naming.module_name("__main__") == expected
    assert naming.module_name("examples.agent") == "examples.agent"

    async def squares(stream: agentlib.StreamT[int]) -> AsyncIterator[int]:
        async for value in stream:
            yield value

    squares.__module__, squares.__qualname__ = "__main__", "squares"
    app = agentlib.App("pow2-example")
    assert app.agent()(squares).topic_names() == [f"pow2-example-{expected}.squares"]
