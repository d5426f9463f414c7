"""Watch rules: compiling them into an index, matching papers, explaining why."""

from monitor.match.explain import explain
from monitor.match.index import RuleIndex, compile_rules

__all__ = ["RuleIndex", "compile_rules", "explain"]
