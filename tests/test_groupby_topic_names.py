"""group_by's repartition topic is named as faust-streaming names it (Stream.group_by):
agents grouping different topics by the same field get different topics, and a real
Faust app (imported, no worker) derives the same names as agentlib."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import agentlib


def _agentlib_names() -> dict[str, list[str]]:
    app = agentlib.App("parity-app")

    class Payment(agentlib.Record):
        account_id: str

    payments = app.topic("payments", value_type=Payment)
    logins = app.topic("logins", value_type=Payment)

    @app.agent(payments, name="parity.pay")
    async def pay(stream: Any) -> None:
        async for _ in stream.group_by(Payment.account_id):
            pass

    @app.agent(logins, name="parity.login")
    async def login(stream: Any) -> None:
        async for _ in stream.group_by(Payment.account_id):
            pass

    @app.agent(name="parity.own")
    async def own(stream: Any) -> None:
        async for _ in stream.group_by(lambda p: p.account_id.upper(), name="upper"):
            pass

    return {agent.name: agent.topic_names()[1:] for agent in (pay, login, own)}


def _faust_names() -> dict[str, list[str]]:
    import faust

    app = faust.App("parity-app", broker="kafka://127.0.0.1:9")

    class Payment(faust.Record):
        account_id: str

    payments = app.topic("payments", value_type=Payment)
    logins = app.topic("logins", value_type=Payment)

    async def reader(stream: Any) -> None:
        async for _ in stream:
            pass

    pay = app.agent(payments, name="parity.pay")(reader)
    login = app.agent(logins, name="parity.login")(reader)
    own = app.agent(name="parity.own")(reader)
    groupings: list[tuple[Any, Callable[[Any], Any]]] = [
        (pay, lambda s: s.group_by(Payment.account_id)),
        (login, lambda s: s.group_by(Payment.account_id)),
        (own, lambda s: s.group_by(lambda p: p.account_id.upper(), name="upper"))]

    async def derive() -> dict[str, list[str]]:
        # Faust's own Stream.group_by, on the stream its agent would iterate
        return {agent.name: [group(agent.stream()).channel.get_topic_name()]
                for agent, group in groupings}
    return asyncio.run(derive())


def test_two_agents_grouping_different_topics_by_one_field_get_different_topics() -> None:
    names = _agentlib_names()
    assert names["parity.pay"] != names["parity.login"]
    assert names["parity.pay"] == ["parity.pay-payments-Payment.account_id-repartition"]
    assert names["parity.own"] == ["parity-app-parity.own-upper-repartition"]


def test_repartition_topic_names_are_faust_streamings() -> None:
    assert _agentlib_names() == _faust_names()
