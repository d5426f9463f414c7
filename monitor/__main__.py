"""``python -m monitor`` and the ``paper-monitor`` command."""

import sys

from monitor import signals  # (the standard library only: it loads at once)


def main() -> int:
    # Before the rest of the code loads: a SIGHUP meanwhile (a reload asked of a daemon just
    # started) would otherwise end the process with no line, and systemd would not restart it.
    signals.hold()
    from monitor.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
