"""The fault harness's own logic: waiting for commits survives a query that timed out
(the CI run of row 24 failed on one right after the broker restart), and only that."""

from __future__ import annotations

import faultkit
import pytest
from confluent_kafka import KafkaError, KafkaException


def _raising(code: int):
    def query(bootstrap: str, group: str, topic: str) -> bool:
        raise KafkaException(KafkaError(code))
    return query


def test_a_timed_out_committed_query_is_not_yet(monkeypatch):
    monkeypatch.setattr(faultkit, "committed_equals_end", _raising(KafkaError._TIMED_OUT))
    assert faultkit.committed_at_end_yet("b", "g", "t") is False


def test_other_errors_and_answers_pass_through(monkeypatch):
    monkeypatch.setattr(faultkit, "committed_equals_end",
                        _raising(KafkaError.GROUP_AUTHORIZATION_FAILED))
    with pytest.raises(KafkaException):
        faultkit.committed_at_end_yet("b", "g", "t")
    monkeypatch.setattr(faultkit, "committed_equals_end", lambda *_: True)
    assert faultkit.committed_at_end_yet("b", "g", "t") is True
