"""The plugin's assertion helpers name the failing rule with its evidence."""

from __future__ import annotations

import pytest

from testbed.conformance.verdict import Evidence, RuleResult, Verdict
from testbed.pytest_plugin import assert_rules, assert_verdict


def verdict(*rules: RuleResult) -> Verdict:
    return Verdict(rules=tuple(rules))


OK = RuleResult("asconf.ack", "pass", "3 acknowledged")
BAD = RuleResult("asconf.auth", "fail", "ASCONF without AUTH",
                 (Evidence("ar2-mn.pcap", 17, 1.0, "ASCONF serial 2"),))


def test_assert_rules_by_id_and_group():
    assert_rules(verdict(OK), "asconf.ack")
    assert_rules(verdict(OK), "asconf")
    with pytest.raises(AssertionError, match=r"asconf.auth: fail: ASCONF without AUTH \[ar2-mn.pcap#17"):
        assert_rules(verdict(OK, BAD), "asconf")
    with pytest.raises(AssertionError, match="no such rule"):
        assert_rules(verdict(OK), "dns.signed")


def test_assert_verdict():
    assert_verdict(verdict(OK, RuleResult("dns.signed", "skip", "no DNS")))
    with pytest.raises(AssertionError, match="asconf.auth"):
        assert_verdict(verdict(OK, BAD))
