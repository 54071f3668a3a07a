"""The guide's complete example: an agent that adds numbers, and a command that asks it.

Run the agent under agentd (or any Faust worker of app ``agent-example``), then::

    python -m examples.agent send_value 4 8 --print
    Sending Add(4, 8)...
    12

The guide's ``send_value`` printed ``Add({x}, {y})`` (names that do not exist) and
called its flag parameter ``print``, which hid the builtin it then called; here the
flag keeps its command-line spelling ``--print/--no-print`` but binds to ``verbose``.
"""

from collections.abc import AsyncIterable

import agentlib as faust
from agentlib.cli import argument, option


# The model describes the data sent to our agent: a JSON serialized dictionary
# with two integer fields, a and b.
class Add(faust.Record):
    a: int
    b: int


# The application object that configures the environment.
app = faust.App('agent-example')

# The Kafka topic used by the agent is named 'adding'; its values are Add records.
topic = app.topic('adding', value_type=Add)


@app.agent(topic)
async def adding(stream: faust.StreamT[Add]) -> AsyncIterable[int]:
    async for value in stream:
        # here we receive Add objects, add a + b.
        yield value.a + value.b


@app.command(
    argument('a', type=int, help='First number to add'),
    argument('b', type=int, help='Second number to add'),
    option('--print/--no-print', 'verbose', help='Enable debug output'),
)
async def send_value(a: int, b: int, verbose: bool) -> None:
    if verbose:
        print(f'Sending Add({a}, {b})...')
    print(await adding.ask(Add(a, b)))


if __name__ == '__main__':
    app.main()
