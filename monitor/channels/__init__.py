"""Channels: Slack, email, RSS/Atom, webhook and console, each one implementation of ``Channel``."""
