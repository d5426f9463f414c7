"""The tables, as SQLAlchemy Core metadata shared by the SQLite and PostgreSQL stores.

Times are UTC epoch seconds (float). A paper has a surrogate ``id`` so its ``key`` can move from
``title:...`` to ``arxiv:...`` without touching the matches and deliveries that point at it.
Values from scraped pages or the config (keys, arXiv ids, rule/channel/source names) are ``Text``:
PostgreSQL enforces VARCHAR lengths, and no name or page should make a poll fail.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 10

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

papers = sa.Table(
    "papers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False, unique=True),
    sa.Column("arxiv_id", sa.Text, unique=True),  # NULL for papers known by title only
    sa.Column("title_norm", sa.Text, nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("abstract", sa.Text),
    sa.Column("authors", sa.JSON, nullable=False),  # list[str]
    sa.Column("authors_count", sa.Integer),
    sa.Column("organization", sa.Text),
    sa.Column("organization_id", sa.Text),
    sa.Column("published", sa.Date),
    sa.Column("upvotes", sa.Integer),
    sa.Column("url", sa.Text),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Every title a paper has been seen with, in a form that also holds across the spacing of its
# symbols ("M$^3$ViT" and "M^3ViT" are "m3vit"): a plain-text page (titles only) still finds the
# paper after its title was edited, or when it renders the title another way. A form belongs to the
# first paper seen with it.
titles = sa.Table(
    "titles",
    metadata,
    sa.Column("form", sa.Text, primary_key=True),
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), nullable=False),
)

matches = sa.Table(
    "matches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),  # list[str]
    sa.Column("matched_at", sa.Float, nullable=False),
    sa.UniqueConstraint("rule", "paper_id", name="uq_matches_rule_paper"),
)
# A poll's papers' matches (which of its hits are recorded already), ``why``'s: without it each
# chunk of a poll's papers read the whole table (0.7 s at 800,000 matches, under the write lock).
ix_matches_paper = sa.Index("ix_matches_paper", matches.c.paper_id)

# The outbox: one row per (rule, paper, channel); it stays until the channel confirmed it.
# state: pending -> sending -> sent | failed (retry at next_attempt_at) -> dead
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("match_id", sa.Integer, sa.ForeignKey("matches.id"), nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("batch_key", sa.String(64)),  # stable across retries of one batch (Idempotency-Key)
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("claimed_at", sa.Float),
    sa.Column("sent_at", sa.Float),
    sa.Column("failing_since", sa.Float),  # the first failure of the tries since the last success
    # When the channel confirmed the message carrying this row while its batch went on (a Slack
    # batch sent as several messages): a retry of the batch, after a restart too, skips it.
    sa.Column("posted_at", sa.Float),
    sa.UniqueConstraint("rule", "paper_id", "channel", name="uq_deliveries_rule_paper_channel"),
)
# A channel's queue in order: its oldest pending (or failed) row is one seek, however long the
# backlog (v1-v9 had ix_deliveries_due, ending in next_attempt_at: the head was a sort of every
# open row, 0.2-0.6 s at 290,000).
ix_deliveries_queue = sa.Index("ix_deliveries_queue", deliveries.c.channel, deliveries.c.state,
                               deliveries.c.id)
# The rows of one batch (a retry's claim, marking it sent or failed), not every due row of its channel.
ix_deliveries_batch = sa.Index("ix_deliveries_batch", deliveries.c.batch_key)
sa.Index("ix_deliveries_sent", deliveries.c.channel, deliveries.c.sent_at)
# By state first: the few open rows (the daemon's gauges, recovery, status) are found without
# reading the sent ones, which only grow; and a channel's newest sent rows (its feed) come in order.
ix_deliveries_state = sa.Index("ix_deliveries_state", deliveries.c.state, deliveries.c.channel,
                               deliveries.c.created_at, deliveries.c.id)
# A rule's own feed (``/feeds/<channel>.xml?rule=``): its newest sent rows, without reading the
# channel's others (200,000 of them took 0.2 s a request).
ix_deliveries_rule = sa.Index("ix_deliveries_rule", deliveries.c.channel, deliveries.c.rule,
                              deliveries.c.state, deliveries.c.created_at, deliveries.c.id)
# A feed item's every rule: the rows of a paper in a channel, however long before its newest one.
ix_deliveries_paper = sa.Index("ix_deliveries_paper", deliveries.c.channel, deliveries.c.paper_id)

# Per-source polling state: conditional GET validators and health.
sources = sa.Table(
    "sources",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_attempt", sa.Float),
    sa.Column("last_success", sa.Float),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, default=0),
    # The last day whose whole listing was read after it ended (the HF API's catch-up), ISO.
    sa.Column("caught_up", sa.Text),
    # The format the source's page last read as, when its config says "auto": a page that reads as
    # another one (a maintenance notice in plain text, where JSON was) is a failure, not papers.
    sa.Column("format", sa.String(16)),
)

# The daemons standing by (``run --standby``), so that ``status`` can name them: each writes its
# line here while it waits (every few seconds) and deletes it when it takes over or stops.
standbys = sa.Table(
    "standbys",
    metadata,
    sa.Column("line", sa.Text, primary_key=True),  # run --standby, pid 1234 on host, since ...
    sa.Column("seen", sa.Float, nullable=False),
)
