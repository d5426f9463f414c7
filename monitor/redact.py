"""Secrets out of what is printed and logged: a URL keeps its scheme, host, path and harmless
parameters, but not the password of its userinfo nor the values of parameters named like secrets
(``https://bob:***@host/feed?api_key=***&limit=10``)."""

from __future__ import annotations

import re

REDACTED = "***"
# Query parameter names that carry secrets: password, passwd, pwd, token, access_token, key, api_key,
# apikey, secret, client_secret, sig, signature, auth, credential, session...
_SECRET_NAME = re.compile(r"pass|pwd|token|key|secret|sig|auth|cred|session", re.I)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_PARAM = re.compile(r"(?<=[?&;])([^=&;#]+)=([^&;#]*)")
# URLs inside free text (an error message): up to a space or a quote; trailing punctuation is the text's.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_TRAILING = ".,;:!?)]}"
# An authority cut short at a slash inside its password: `user:pa` (a port would be digits).
_PASSWORD_WITH_SLASH = re.compile(r"[^:@]*:(?!\d*$)[^@]*")


def _redact_userinfo(userinfo: str) -> str:
    """``user:***``; a user without a password is no secret and is kept."""
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{REDACTED}" if colon else userinfo


def _redact_param(found: re.Match[str]) -> str:
    name = found.group(1)
    return f"{name}={REDACTED}" if _SECRET_NAME.search(name) else found.group(0)


def _split_authority(url: str, start: int, query_at: int) -> int:
    """Where the authority (``user:pw@host:port``) ends: at the first ``/``, unless a password that
    was not percent-encoded (``user:pa/ss@host``) runs past it, when it ends after the last ``@``."""
    slash = url.find("/", start, query_at)
    if slash < 0:
        return query_at
    authority = url[start:slash]
    if "@" in authority or not _PASSWORD_WITH_SLASH.fullmatch(authority):
        return slash
    at = url.rfind("@", slash, query_at)
    if at < 0:
        return slash
    after = url.find("/", at, query_at)
    return after if after >= 0 else query_at


def redact_url(url: str) -> str:
    """``url`` fit to print or log: its password and its secret parameters' values replaced by ***.

    Also for what is not quite a URL (``smtp//user:pw@host``, shown in an error message): then all
    before the last ``@`` ahead of the query goes, but for a leading ``scheme//``.
    """
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    query_at = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0), default=len(url))
    if scheme:
        authority_end = _split_authority(url, start, query_at)
        userinfo, at, host = url[start:authority_end].rpartition("@")
        userinfo = _redact_userinfo(userinfo) + at if at else ""
        head = url[:start] + userinfo + host + url[authority_end:query_at]
    else:
        before, at, after = url[:query_at].rpartition("@")
        if at:
            slashes = before.rfind("//")
            before = before[:slashes + 2] + REDACTED if slashes >= 0 else REDACTED
        head = before + at + after
    return head + _PARAM.sub(_redact_param, url[query_at:])


def redact_urls(text: str) -> str:
    """``text`` (a message, an error) with each URL in it redacted as ``redact_url`` does."""
    def one(found: re.Match[str]) -> str:
        url = found.group(0)
        trail = len(url) - len(url.rstrip(_TRAILING))
        return redact_url(url[:len(url) - trail]) + url[len(url) - trail:]

    return _URL_IN_TEXT.sub(one, text)
