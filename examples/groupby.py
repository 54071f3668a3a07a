"""The guide's ``group_by``: repartition transfers so one account meets one instance.

``group_by`` produces each transfer to
``examples.groupby.stream-groupby-transfers_by_account-repartition`` (Faust's name:
agent, topic, ``name``)
keyed by ``account_id`` and reads it back, so every transfer of an account arrives at
the same agent instance, in order.
"""

from collections.abc import AsyncIterable

import agentlib as faust


class BankTransfer(faust.Record):
    account_id: str
    amount: float


app = faust.App('groupby')
topic = app.topic('groupby', value_type=BankTransfer)


@app.agent(topic)
async def stream(s: faust.StreamT[BankTransfer]) -> AsyncIterable[BankTransfer]:
    async for transfer in s.group_by(BankTransfer.account_id, name='transfers_by_account'):
        # transfers will now be distributed such that transfers
        # with the same account_id always arrives to the same agent
        # instance
        yield transfer
