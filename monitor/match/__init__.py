"""Watch rules: compiling them into an index, matching papers, explaining why."""

from monitor.match.explain import explain
from monitor.match.index import RuleIndex, check_rules, compile_rules

__all__ = ["RuleIndex", "check_rules", "compile_rules", "explain"]
