"""A transaction left hanging in ``__consumer_offsets`` is named in the daemon's log,
with its partitions and the remedy, instead of a daemon that silently consumes nothing;
after the remedy (an abort) the daemon consumes on by itself.

The fixture is the Kafka 4.4 data directory fault row 24 (exactly once, broker down
20 s) left in CI on 2026-12-07: the transaction coordinator had logged the commit of
instance 0's transaction complete (``CompleteCommit``) while its marker never reached
``__consumer_offsets`` (the broker stopped at that moment), so the offsets it wrote for
partitions 0 and 2 of the source stay pending for good. A ``read_committed`` consumer of
the group then waits for the stable offsets of its whole assignment, forever. A broker
started on a copy of that directory has the same state, so the case replays here.
"""

from __future__ import annotations

import re
import signal
import tarfile
from pathlib import Path

import kafkatools
import pytest
from agentdproc import Agentd, wait_committed, wait_until
from confluent_kafka import KafkaException
from faults.faultkit import committed_at_end_yet, forward_agent
from faults.hanging import ride_out_lost_markers

from supervisor.devbrokers.devbroker import free_port

FIXTURE = Path(__file__).parent / "fixtures" / "kafka-4.4-hanging-transaction.tgz"
GROUP = "fault-24-eos-broker-down-20s-ce7cddc72c50"
SOURCE = "fault-24-eos-broker-down-20s-in-49aad17513de"
SINK = "fault-24-eos-broker-down-20s-out-a91b13a9084c"


def pending_offsets(bootstrap: str) -> dict[int, int] | None:
    """The group's offsets, pending ones included; None while the coordinator loads."""
    try:
        return kafkatools.committed_offsets(bootstrap, GROUP, SOURCE, stable=False)
    except KafkaException:
        return None


@pytest.mark.kafka
def test_a_hanging_transaction_is_named_with_its_partitions_and_the_remedy(tmp_path):
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    broker, bootstrap = kafkatools.spawn_dev_broker(
        "--data-dir", str(tmp_path / "kafka"), "--port", str(free_port()))
    try:
        pending = wait_until(lambda: pending_offsets(bootstrap), 60,
                             "the group coordinator to answer after its load")
        assert pending == {0: 138, 1: 237, 2: 139, 3: 237}  # the fixture is as described
        settings = {"app": "fault_forward:app", "broker": f"kafka://{bootstrap}",
                    "group_id": GROUP, "processing_guarantee": "exactly_once",
                    "commit_interval": 0.2}
        (tmp_path / "run").mkdir()
        with Agentd(tmp_path / "run", settings, agents={"forward": {"instances": 2}},
                    modules={"fault_forward": forward_agent()},
                    env={"IN_TOPIC": SOURCE, "SINK_TOPIC": SINK}) as daemon:
            daemon.wait_consuming()
            line = wait_until(lambda: daemon.assert_running() or re.search(
                r"ERROR agentd: .*not fetched.*", daemon.log()), 90,
                "the daemon to name the partitions a hanging transaction holds")
            named = line.group(0)
            assert f"those of {SOURCE}[0], {SOURCE}[2] never came" in named
            assert f"group {GROUP}" in named and "find-hanging" in named
            # The remedy the line names, as fault row 24 applies it: abort it. The
            # daemon goes on by itself, from the offsets committed before that
            # transaction (138 and 139; it held 142 and 142): 7 inputs come again.
            allowed, aborted = ride_out_lost_markers(
                bootstrap, GROUP, SOURCE, daemon,
                lambda: committed_at_end_yet(bootstrap, GROUP, SOURCE),
                timeout=90, check_every=1)
            assert [(t.producer_id, t.state, t.aborted) for t in aborted] == [(1, "Empty", True)]
            assert aborted[0].pending == {(SOURCE, 0): 142, (SOURCE, 2): 142}
            assert allowed == 7
            wait_committed(daemon, bootstrap, GROUP, SOURCE, 30,
                           "the source consumed to its end after the abort")
            wait_until(lambda: re.search(rf"{SOURCE}\[0\] started fetching", daemon.log()),
                       30, "the daemon to say the partitions fetch again")
            assert daemon.stop() == 0
    finally:
        broker.send_signal(signal.SIGINT)
        broker.wait(60)
