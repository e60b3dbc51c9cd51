"""Appendix-A conformance checking of captures: rules, checker, handover timeline.

See ``testbed.conformance.rules`` for the rule table and ``check`` for the entry point.
"""

from testbed.conformance.checker import check, find_captures, select_rules
from testbed.conformance.cli import main
from testbed.conformance.rules import GROUPS, RULE_IDS
from testbed.conformance.timeline import PHASES
from testbed.conformance.verdict import Evidence, RuleResult, Verdict

__all__ = [
    "GROUPS", "PHASES", "RULE_IDS", "Evidence", "RuleResult", "Verdict", "check",
    "find_captures", "main", "select_rules",
]  # fmt: skip
