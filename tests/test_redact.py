"""What of a URL may be printed or logged (monitor.redact): never a password, never the value of a
parameter named like a secret; the rest stays, so that a person can tell which URL it is."""

from __future__ import annotations

import pytest

from monitor.redact import redact_url, redact_urls

URLS = [
    ("https://bob:s3cret@host/feed?api_key=s3cret&limit=10", "https://bob:***@host/feed?api_key=***&limit=10"),
    ("postgresql+psycopg://u:s3cret@db:5432/x?sslmode=require&password=s3cret",
     "postgresql+psycopg://u:***@db:5432/x?sslmode=require&password=***"),
    ("https://h/x?token=s3cret&Signature=s3cret&X-Amz-Credential=s3cret&secret=s3cret#top",
     "https://h/x?token=***&Signature=***&X-Amz-Credential=***&secret=***#top"),
    ("https://h/x?sig=s3cret;apikey=s3cret;q=kv", "https://h/x?sig=***;apikey=***;q=kv"),
    ("https://bob:s3/cret@host/feed", "https://bob:***@host/feed"),  # a slash not percent-encoded
    ("smtp://bob:s3cr@t@mail.example.org:587", "smtp://bob:***@mail.example.org:587"),
    ("smtp//bob:s3cret@mail.example.org", "smtp//***@mail.example.org"),  # not quite a URL
    ("bob:s3cret@mail.example.org", "***@mail.example.org"),
    # nothing secret: as it is
    ("sqlite:///var/paper-monitor.db", "sqlite:///var/paper-monitor.db"),
    ("postgresql+psycopg://monitor@db/papers", "postgresql+psycopg://monitor@db/papers"),
    ("https://mastodon.social/@bob.rss", "https://mastodon.social/@bob.rss"),
    ("https://h:8080/@bob/feed", "https://h:8080/@bob/feed"),
    ("http://export.arxiv.org/api/query?search_query=cat:cs.LG&max_results=100",
     "http://export.arxiv.org/api/query?search_query=cat:cs.LG&max_results=100"),
    ("not a url", "not a url"),
]


@pytest.mark.parametrize(("url", "shown"), URLS)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3" not in shown


def test_urls_in_a_message_are_redacted_and_the_message_kept() -> None:
    message = 'FetchError: GET https://bob:s3cret@h/f?api_key=s3cret: HTTP 500 (see "http://x/?token=s3cret").'
    assert redact_urls(message) == (
        'FetchError: GET https://bob:***@h/f?api_key=***: HTTP 500 (see "http://x/?token=***").'
    )
