"""``paper-monitor discard``: dead deliveries dropped once nobody wants them, and the waiting alerts of a
channel taken out of the config, which no daemon will ever send. Real ``once`` runs against the
recorded HF API page and webhooks on loopback; status as the operator reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemon_support import cli, source, write_config
from tests.helpers import HF_JSON, ReplayServer, Reply, free_port

HOT = sum(1 for item in json.loads(HF_JSON.read_bytes()) if item["paper"].get("upvotes", 0) >= 10)


def _channels(*names: str) -> str:
    return "".join(f'[[channels]]\nname = "{name}"\ntype = "webhook"\nurl = "{{url}}/{name}"\n\n'
                   for name in names)


def _config(tmp: Path, replay: ReplayServer, *channels: str) -> Path:
    notify = ", ".join(f'"{name}"' for name in channels)
    return write_config(tmp, port=free_port(),
                        sources=source("hf", replay.url("/papers"), every="1h") + 'catch_up = "off"\n',
                        channels=_channels(*channels).replace("{url}", replay.base_url),
                        rules=f'[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = [{notify}]\n')


def _table(config: Path) -> dict[str, list[str]]:
    """status's rows of channels by name: type, pending, failed, dead, sent today; and the lines
    under a row (its last error, or a hint) under the name + ':'."""
    done = cli(config, "status")
    assert done.returncode == 0, done.stderr
    rows: dict[str, list[str]] = {}
    last = ""
    for line in done.stdout.split("\n\n")[0].splitlines()[1:]:
        if line.startswith(" "):
            rows.setdefault(last + ":", []).append(line.strip())
        else:
            last, *rows[line.split()[0]] = line.split()
    return rows


@pytest.mark.slow
def test_discard_drops_dead_deliveries_and_those_of_a_channel_no_longer_in_the_config(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    replay.route("/hook", Reply(b"unknown field", 422))  # permanent: dead at once
    replay.route("/gone", Reply(b"down", 503))  # transient: failed, waiting for its retry
    config = _config(tmp_path, replay, "hook", "gone")
    assert cli(config, "once").returncode == 1
    table = _table(config)
    assert table["hook"] == ["webhook", "0", "0", str(HOT), "0"]  # dead
    assert table["gone"] == ["webhook", "0", str(HOT), "0", "0"]  # failed

    refused = cli(config, "discard", "hook")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ('paper-monitor discard: channel "hook" is in the config: '
                                      '"discard --dead hook" discards its dead deliveries')
    assert cli(config, "discard").returncode == 2  # neither a channel nor --dead

    dead = cli(config, "discard", "--dead", "hook")
    assert dead.returncode == 0 and dead.stdout.strip() == f"discarded {HOT} dead deliveries (channel hook)"
    assert _table(config)["hook"] == ["webhook", "0", "0", "0", "0"]

    config = _config(tmp_path, replay, "hook")  # the "gone" channel taken out of the config
    table = _table(config)
    assert table["gone"] == ["(gone)", "0", str(HOT), "0", "0"]
    assert table["gone:"] == ['not in the config: "paper-monitor discard gone" drops its deliveries, '
                              "or put it back to send them"]
    gone = cli(config, "discard", "gone")
    assert gone.returncode == 0
    assert gone.stdout.strip() == f"discarded {HOT} deliveries of channel gone, which is not in the config"
    assert "gone" not in _table(config)

    replay.route("/hook", Reply(b"ok"))
    again = cli(config, "once")
    assert again.returncode == 0, again.stderr
    posts = [seen.path for seen in replay.requests if seen.method == "POST"]
    assert posts.count("/hook") == 1  # the 422 only: nothing discarded was sent
    assert cli(config, "discard", "--dead").stdout.strip() == "discarded 0 dead deliveries (all channels)"
