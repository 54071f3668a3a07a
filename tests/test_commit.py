"""Prompt commits: a caught-up partition is committed when the fetch comes back empty,
rate-limited, instead of waiting for the next ``commit_interval`` tick."""

from __future__ import annotations

from datapath_fakes import FakeConsumer

from supervisor.config.loader import loads
from supervisor.daemon.commit import Committer, OffsetTracker, prompt_commit_due
from supervisor.daemon.fleet import Fleet


def test_prompt_commit_needs_an_empty_fetch():
    assert not prompt_commit_due(10.0, 0.0, 1.0, fetched_nothing=False)
    assert prompt_commit_due(10.0, 0.0, 1.0, fetched_nothing=True)


def test_prompt_commit_is_rate_limited_to_a_tenth_of_the_interval():
    assert not prompt_commit_due(100.5, 100.0, 10.0, fetched_nothing=True)
    assert prompt_commit_due(101.0, 100.0, 10.0, fetched_nothing=True)


def test_prompt_commits_are_never_more_than_ten_a_second_even_with_a_short_interval():
    # commit_interval 0.05 s: a tenth of it (5 ms) would allow 200 prompt commits a second
    assert not prompt_commit_due(100.05, 100.0, 0.05, fetched_nothing=True)
    assert not prompt_commit_due(100.099, 100.0, 0.05, fetched_nothing=True)
    assert prompt_commit_due(100.11, 100.0, 0.05, fetched_nothing=True)


def test_prompt_commits_stay_prompt_with_a_long_interval():
    # commit_interval 600 s: a tenth of it made a drained backlog wait 60 s for its commit
    assert not prompt_commit_due(100.9, 100.0, 600.0, fetched_nothing=True)
    assert prompt_commit_due(101.0, 100.0, 600.0, fetched_nothing=True)


def make_committer(tracker: OffsetTracker) -> tuple[Committer, FakeConsumer]:
    """The commit leg on a data path of its own (a fake consumer, no instances)."""
    consumer = FakeConsumer()
    fleet = Fleet(loads('app = "x"\ncommit_interval = "1000s"\n'), "")
    committer = Committer(tracker, fleet, on_report=lambda inst, record: None)
    committer.consumer = consumer
    committer.next_commit = float("inf")  # no interval tick during the test
    return committer, consumer


def test_a_drained_partition_is_committed_at_once_when_the_fetch_is_empty():
    tracker = OffsetTracker()
    done, busy = ("t", 0), ("t", 1)
    for offset in range(3):
        tracker.dispatched(done, offset)
        tracker.dispatched(busy, offset)
    tracker.acked(done, 0, 2)
    committer, consumer = make_committer(tracker)
    committer.commit_if_due(fetched_nothing=False)
    assert consumer.commits == []           # records still coming: the interval decides
    committer.commit_if_due(fetched_nothing=True)
    assert consumer.commits == [{done: 3}]  # only the partition with nothing in flight


def test_nothing_is_committed_early_while_a_record_is_unacked():
    tracker = OffsetTracker()
    tracker.dispatched(("t", 0), 0)
    committer, consumer = make_committer(tracker)
    committer.commit_if_due(fetched_nothing=True)
    assert consumer.commits == []


def test_a_look_that_found_nothing_caught_up_waits_a_tenth_before_the_next():
    tracker = OffsetTracker()
    tracker.dispatched(("t", 0), 0)
    committer, consumer = make_committer(tracker)
    committer.commit_if_due(fetched_nothing=True)   # looks: offset 0 still in flight
    tracker.acked(("t", 0), 0, 0)
    committer.commit_if_due(fetched_nothing=True)   # within the tenth: no second look
    assert consumer.commits == []
    committer.last_check -= 100.0                   # a tenth of the interval later
    committer.commit_if_due(fetched_nothing=True)
    assert consumer.commits == [{("t", 0): 1}]


def test_commits_refused_for_an_old_generation_are_logged_once_per_rebalance(caplog):
    """A rebalance refuses every commit the same way (ILLEGAL_GENERATION,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID): one warning until a commit succeeds,
    then a new rebalance warns again; other failures are always logged."""
    from confluent_kafka import KafkaError

    committer, _ = make_committer(OffsetTracker())
    with caplog.at_level("WARNING", logger="agentd"):
        for code in (KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
                     KafkaError.UNKNOWN_MEMBER_ID, KafkaError._WAIT_COORD) * 10:
            committer.on_commit(KafkaError(code), [])
        assert len(caplog.records) == 1
        committer.on_commit(None, [])                 # the rebalance is over
        for _ in range(5):
            committer.on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION), [])
        assert len(caplog.records) == 2
        committer.on_commit(KafkaError(KafkaError._TRANSPORT), [])
        committer.on_commit(KafkaError(KafkaError._TRANSPORT), [])
        assert len(caplog.records) == 4
