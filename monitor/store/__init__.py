"""The paper store: every paper seen, the matches, the delivery outbox, per-source state."""
