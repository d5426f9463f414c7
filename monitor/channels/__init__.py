"""Channels: Slack, email, RSS/Atom, webhook and console, each one implementation of ``Channel``.

``build_channels(settings, store)`` is the registry: one factory per ``type``, each importing its
module only when a channel of that type is configured (Slack's SDK is not loaded for nothing).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

from monitor.channels.base import Channel, FeedRows
from monitor.config import ChannelConfig, RssConfig, Settings
from monitor.errors import ConfigError, MonitorError

Factory = Callable[[ChannelConfig, Settings, FeedRows], Channel]


def _plain(module: str, cls: str) -> Factory:
    """A factory for channels built from their config alone: ``cls(cfg)``."""

    def build(cfg: ChannelConfig, settings: Settings, store: FeedRows) -> Channel:
        implementation = getattr(importlib.import_module(module), cls)
        return cast(Channel, implementation(cfg))

    return build


def _rss(cfg: ChannelConfig, settings: Settings, store: FeedRows) -> Channel:
    from monitor.channels.rss import RssChannel

    assert isinstance(cfg, RssConfig)
    return RssChannel(cfg, store, Path(settings.monitor.feeds_dir))


FACTORIES: dict[str, Factory] = {
    "slack": _plain("monitor.channels.slack", "SlackChannel"),
    "email": _plain("monitor.channels.email", "EmailChannel"),
    "webhook": _plain("monitor.channels.webhook", "WebhookChannel"),
    "console": _plain("monitor.channels.console", "ConsoleChannel"),
    "rss": _rss,
}


def build_channel(cfg: ChannelConfig, settings: Settings, store: FeedRows) -> Channel:
    """The channel ``cfg`` describes; ``ConfigError`` if its variables are not all set (a config
    read for a command that sends nothing)."""
    if unset := settings.unset_variables(cfg.name):
        raise ConfigError(unset)
    try:
        return FACTORIES[cfg.type](cfg, settings, store)
    except ImportError as exc:
        raise MonitorError(f"channel {cfg.name}: {cfg.type} channels are not available: {exc}") from exc


def build_channels(settings: Settings, store: FeedRows) -> dict[str, Channel]:
    """Every configured channel by name. On failure the ones already built are closed."""
    built: dict[str, Channel] = {}
    try:
        for cfg in settings.channels:
            built[cfg.name] = build_channel(cfg, settings, store)
    except BaseException:
        for channel in built.values():
            channel.close()
        raise
    return built
