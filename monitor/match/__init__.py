"""Watch rules: compiling them into an index, matching papers, explaining why."""
