"""``paper-monitor status --json``: what the table shows, as one JSON object a script can read. A real
``once`` against the recorded HF API page and loopback webhooks, a standby's line in the store."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.store import open_store
from monitor.store.lock import holder_fields, holder_line
from tests.daemon_support import cli, source, write_config
from tests.helpers import HF_JSON, ReplayServer, Reply, free_port

HOT = sum(1 for item in json.loads(HF_JSON.read_bytes()) if item["paper"].get("upvotes", 0) >= 10)


@pytest.mark.slow
def test_status_json_tells_the_channels_sources_daemon_and_standbys(
    tmp_path: Path, replay: ReplayServer
) -> None:
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    replay.route("/hook", Reply(b"unknown field", 422))  # dead at once
    channels = (f'[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{replay.url("/hook")}"\n\n'
                '[[channels]]\nname = "feed"\ntype = "rss"\n')
    config = write_config(tmp_path, port=free_port(),
                          sources=source("hf", replay.url("/papers"), every="1h") + 'catch_up = "off"\n'
                          + source("never", replay.url("/never"), every="1h"),
                          channels=channels,
                          rules='[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["hook", "feed"]\n')
    before = time.time()
    assert cli(config, "once").returncode == 1  # (the dead webhook)
    store = open_store(f"sqlite:///{tmp_path}/monitor.db")
    try:
        store.note_standby("run --standby, pid 7 on b, since 2026-12-01 10:00 UTC")
        store.note_standby("run --standby, pid 8 on c, since 2026-12-01 09:00 UTC", time.time() - 600)
    finally:
        store.close()
    config.write_text(config.read_text().replace('name = "hook"', 'name = "hook2"')
                      .replace('notify = ["hook"', 'notify = ["hook2"'))  # "hook" taken out

    done = cli(config, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["channels"] == [
        {"name": "hook2", "type": "webhook", "pending": 0, "failed": 0, "dead": 0, "sent_today": 0,
         "last_error": None},
        {"name": "feed", "type": "rss", "pending": 0, "failed": 0, "dead": 0, "sent_today": HOT,
         "last_error": None},
        {"name": "hook", "type": None, "pending": 0, "failed": 0, "dead": HOT, "sent_today": 0,
         "last_error": status["channels"][2]["last_error"]},
    ]
    assert "HTTP 422" in status["channels"][2]["last_error"]
    hf, never = status["sources"]
    assert hf["name"] == "hf" and hf["http_status"] == 200
    assert hf["failures"] == 0 and hf["last_error"] is None
    polled = datetime.fromisoformat(hf["last_poll"].replace("Z", "+00:00"))
    assert hf["last_poll"].endswith("Z") and before - 1 <= polled.timestamp() <= time.time()
    assert hf["last_success"] == hf["last_poll"] and hf["past_days_from"] is None
    assert never["last_poll"] is not None and never["last_success"] is None  # (a 404 from the replay)
    assert never["http_status"] == 404 and never["failures"] == 1 and "404" in never["last_error"]
    assert status["daemon"] is None and status["daemon_process"] is None
    assert status["standbys"][0]["process"] == {"command": "run --standby", "pid": 7, "host": "b",
                                                "since": "2026-12-01T10:00:00Z"}
    assert [(s["line"], s["fresh"]) for s in status["standbys"]] == [
        ("run --standby, pid 7 on b, since 2026-12-01 10:00 UTC", True),
        ("run --standby, pid 8 on c, since 2026-12-01 09:00 UTC", False),
    ]
    assert all(datetime.fromisoformat(s["seen"].replace("Z", "+00:00")).tzinfo == UTC
               for s in status["standbys"])

    table = cli(config, "status").stdout  # the same, for people
    assert "hook                 (gone)          0       0      " + str(HOT) in table


@pytest.mark.slow
def test_commands_that_read_the_store_do_not_make_an_empty_one_elsewhere(tmp_path: Path) -> None:
    # The daemon runs in its own directory with a relative path; an operator asks from another.
    home, elsewhere = tmp_path / "daemon", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    config = write_config(home, port=free_port(), sources=source("hf", "http://127.0.0.1:9/papers"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n',
                          rules='[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["feed"]\n')
    config.write_text(config.read_text().replace(f"sqlite:///{home}/", "sqlite:///var/"))
    for args in (["status"], ["status", "--json"], ["why", "kv cache"], ["backtest"], ["retry-dead"],
                 ["discard", "--dead"]):
        ran = subprocess.run([sys.executable, "-m", "monitor", *args, "--config", str(config)],
                             cwd=elsewhere, capture_output=True, text=True, timeout=60, check=False)
        assert ran.returncode == 2, (args, ran.stdout, ran.stderr)
        assert ran.stderr.strip() == (
            f"monitor.database: no store at {elsewhere}/var/monitor.db (the path of "
            "sqlite:///var/monitor.db is taken from the working directory): run this where the daemon "
            "runs, or give the database an absolute path"), args
    assert not (elsewhere / "var").exists()


@pytest.mark.slow
def test_commands_that_send_nothing_work_in_a_shell_without_the_channels_secrets(
    tmp_path: Path, replay: ReplayServer
) -> None:
    # The service's environment file names every channel's secrets; an operator's shell has none.
    replay.route("/papers", Reply(HF_JSON.read_bytes()))
    replay.route("/hook", Reply(b"unknown field", 422))  # dead at once
    signing = f"whsec_{base64.b64encode(b'k' * 32).decode()}"
    secrets = {"HOOK_URL": replay.url("/hook"), "HOOK_SECRET": signing,
               "SLACK_WEBHOOK_URL": replay.url("/slack"), "SMTP_PASSWORD": "hunter2", "FEED_TOKEN": "f33d"}
    channels = ('[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "${HOOK_URL}"\n'
                'signing_secret = "${HOOK_SECRET}"\n\n'
                '[[channels]]\nname = "team"\ntype = "slack"\nwebhook_url = "${SLACK_WEBHOOK_URL}"\n\n'
                '[[channels]]\nname = "me"\ntype = "email"\nsmtp_url = "smtp+plain://127.0.0.1:9"\n'
                'username = "monitor"\npassword = "${SMTP_PASSWORD}"\nfrom = "monitor@example.org"\n'
                'to = ["me@example.org"]\n\n'
                '[[channels]]\nname = "feed"\ntype = "rss"\ntoken = "${FEED_TOKEN}"\n')
    config = write_config(tmp_path, port=free_port(),
                          sources=source("hf", replay.url("/papers"), every="1h") + 'catch_up = "off"\n',
                          channels=channels,
                          rules='[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["hook", "feed"]\n')
    assert cli(config, "once", env={**os.environ, **secrets}).returncode == 1  # (the dead webhook)
    bare = {name: value for name, value in os.environ.items() if name not in secrets}

    done = cli(config, "status", "--json", env=bare)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout)["channels"]
    assert [(c["name"], c["type"], c["dead"], c["sent_today"]) for c in told] == [
        ("hook", "webhook", HOT, 0), ("team", "slack", 0, 0), ("me", "email", 0, 0), ("feed", "rss", 0, HOT)]
    assert cli(config, "status", env=bare).returncode == 0
    paper = next(item["paper"] for item in json.loads(HF_JSON.read_bytes()) if item["paper"]["upvotes"] >= 10)
    why = cli(config, "why", paper["id"], env=bare)
    assert why.returncode == 0 and "hot" in why.stdout, why.stderr
    backtest = cli(config, "backtest", env=bare)
    assert backtest.returncode == 0 and f"\nhot {HOT:>9}  " in backtest.stdout, backtest.stderr
    match = cli(config, "match", str(HF_JSON), env=bare)
    assert match.returncode == 0 and len(match.stdout.splitlines()) == HOT, match.stderr
    retry = cli(config, "retry-dead", "hook", env=bare)
    assert (retry.returncode, retry.stdout) == (0, f"requeued {HOT} dead deliveries (channel hook)\n")
    discard = cli(config, "discard", "--dead", env=bare)
    assert (discard.returncode, discard.stdout) == (0, "discarded 0 dead deliveries (all channels)\n")

    unset = ["channels[0].url: environment variable HOOK_URL is not set",
             "channels[0].signing_secret: environment variable HOOK_SECRET is not set",
             "channels[1].webhook_url: environment variable SLACK_WEBHOOK_URL is not set",
             "channels[2].password: environment variable SMTP_PASSWORD is not set",
             "channels[3].token: environment variable FEED_TOKEN is not set"]
    for args in (["check-config"], ["once"], ["test-channel", "feed"], ["run"]):
        refused = cli(config, *args, env=bare, timeout=30)
        assert (refused.returncode, refused.stdout) == (2, ""), args
        assert refused.stderr.splitlines()[-len(unset):] == unset and "Traceback" not in refused.stderr, args
    assert json.loads(cli(config, "status", "--json", env=bare).stdout)["channels"][0]["pending"] == HOT


@pytest.mark.slow
def test_commands_that_read_the_store_do_not_make_one_at_an_absolute_path_either(tmp_path: Path) -> None:
    # The store was removed (or the daemon never ran, or the path is mistyped): nothing to read.
    config = write_config(tmp_path, port=free_port(), sources=source("hf", "http://127.0.0.1:9/papers"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n',
                          rules='[[rules]]\nname = "hot"\nmin_upvotes = 10\nnotify = ["feed"]\n')
    gone = tmp_path / "var" / "monitor.db"
    every = (["status"], ["status", "--json"], ["why", "kv cache"], ["backtest"], ["retry-dead"],
             ["discard", "--dead"], ["copy-store", "--to", f"sqlite:///{tmp_path}/copy.db"])
    for url, commands in ((f"sqlite:///{gone}", every), (f"sqlite:///file:{gone}?uri=true", every[:1])):
        config.write_text(config.read_text().replace(f"sqlite:///{tmp_path}/monitor.db", url))
        for args in commands:
            ran = subprocess.run([sys.executable, "-m", "monitor", *args, "--config", str(config)],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
            assert ran.returncode == 2, (args, ran.stdout, ran.stderr)
            assert ran.stderr.strip() == (
                f"monitor.database: no store at {gone} (the daemon makes it when it first starts)"), args
        config.write_text(config.read_text().replace(url, f"sqlite:///{tmp_path}/monitor.db"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.toml"]


def test_a_store_that_cannot_be_reached_is_one_line_naming_it_without_its_password(tmp_path: Path) -> None:
    """A PostgreSQL store that refuses connections: each command's line says which database it
    could not open (it said 'upgrading the schema: ...', naming none), the password hidden."""
    port = free_port()  # nothing listens there
    config = write_config(tmp_path, port=free_port(), sources=source("hf", "http://127.0.0.1:9/papers"),
                          channels='[[channels]]\nname = "feed"\ntype = "rss"\n', rules="")
    url = f"postgresql+psycopg://monitor:s3cret-pw@127.0.0.1:{port}/monitor"
    config.write_text(config.read_text().replace(f"sqlite:///{tmp_path}/monitor.db", url))
    for args in (["status"], ["once"], ["copy-store", "--to", f"sqlite:///{tmp_path}/copy.db"]):
        ran = cli(config, *args, timeout=60)
        assert ran.returncode == 1, (args, ran.stderr)
        line = ran.stderr.strip()
        assert "\n" not in line and "Traceback" not in line, (args, ran.stderr)
        assert line.startswith(f"paper-monitor {args[0]}: cannot open the store "
                               f"postgresql+psycopg://monitor:***@127.0.0.1:{port}/monitor"), (args, line)
        assert "s3cret-pw" not in ran.stderr + ran.stdout
    # The target of a copy is named as well, when it is the one that cannot be reached.
    config.write_text(config.read_text().replace(url, f"sqlite:///{tmp_path}/monitor.db"))
    cli(config, "once", timeout=60)  # (makes the store; its source fails)
    ran = cli(config, "copy-store", "--to", url, timeout=60)
    assert ran.returncode == 1
    target = f"postgresql+psycopg://monitor:***@127.0.0.1:{port}/monitor"
    line = ran.stderr.strip()
    assert line.startswith(f"paper-monitor copy-store: cannot open the store {target}"), line


def test_the_holder_s_since_is_to_the_second_for_scripts() -> None:
    """``status --json`` gives a process's start to the second (it made up the seconds: 00)."""
    before = time.time()
    fields = holder_fields(holder_line("run"))
    assert fields is not None
    since = datetime.fromisoformat(str(fields["since"]).replace("Z", "+00:00")).timestamp()
    assert int(before) <= since <= time.time()
    older = holder_fields("run, pid 7 on b, since 2026-12-01 10:00 UTC")  # a daemon of an older version
    assert older is not None and older["since"] == "2026-12-01T10:00:00Z"


def test_the_commands_that_read_no_rule_answer_whatever_the_rules_say(tmp_path: Path) -> None:
    """status, retry-dead and discard read the outbox and the sources, never a rule: a rule broken
    while the daemon runs on (it keeps the config it has) is check-config's to tell, and they do not
    read the rules of a large config at all (100,000 rules took status 12 s)."""
    open_store(f"sqlite:///{tmp_path}/monitor.db").close()
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "team.toml").write_text('[[rules]]\nname = "x"\nkeywords = ["${NOT_SET_HERE}"]\n'
                                                    'notify = ["nowhere"]\n')
    config = tmp_path / "monitor.toml"
    config.write_text(f'[monitor]\ndatabase = "sqlite:///{tmp_path}/monitor.db"\n'
                      'rule_files = ["rules.d/*.toml"]\n\n[[channels]]\nname = "feed"\ntype = "rss"\n\n'
                      '[[rules]]\nname = "bad"\nquery = "kv AND"\nnotify = ["feed"]\n')
    status = cli(config, "status")
    assert status.returncode == 0 and status.stdout.startswith("channel "), status.stderr
    assert cli(config, "retry-dead").stdout == "requeued 0 dead deliveries (all channels)\n"
    assert cli(config, "discard", "--dead").stdout == "discarded 0 dead deliveries (all channels)\n"
    checked = cli(config, "check-config")
    assert checked.returncode == 2
    assert checked.stderr.splitlines() == [
        "rules[0].query: column 7: expected a term",
        "rules.d/team.toml: rules[0].keywords[0]: environment variable NOT_SET_HERE is not set",
        'rules.d/team.toml: rules[0].notify: unknown channel "nowhere"']
    # The config itself is read and checked all the same.
    config.write_text(config.read_text().replace('type = "rss"', 'type = "rsss"'))
    broken = cli(config, "status")
    assert (broken.returncode, broken.stderr) == (
        2, "channels[0].type: must be one of slack, email, rss, webhook, console\n")
