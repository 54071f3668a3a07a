"""The guide's client program: ask the ``adding`` agent from a plain script.

Only a producer and a reply consumer start here, no agents::

    python -m examples.send_to_agent
    8
"""

import asyncio

from examples.agent import Add, adding


async def send_value() -> None:
    print(await adding.ask(Add(a=4, b=4)))


if __name__ == '__main__':
    asyncio.run(send_value())
