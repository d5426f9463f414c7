"""Every parser on random and damaged bytes: a list of valid papers or a ParseError, nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import ParseError
from monitor.models import Paper, clean_arxiv_id, normalize_title, title_key
from monitor.sources import parse_page
from tests.helpers import ARXIV_ATOM, ARXIV_ATOM_LEGACY, ARXIV_RSS_EMPTY, DATA, HF_HTML, HF_JSON, SEED_PAGES

TODAY = date(2026, 6, 14)
FIXTURES = [
    path.read_bytes()
    for path in (
        HF_JSON, HF_HTML, ARXIV_ATOM, ARXIV_ATOM_LEGACY, ARXIV_RSS_EMPTY, DATA / "arxiv_rss_cs_sample.xml",
        DATA / "hf_api_daily_papers_2024-08-01.json", *SEED_PAGES,
    )
]


def page_parser(fmt: str) -> Callable[[bytes], list[Paper]]:
    return lambda data: parse_page(data, fmt, today=TODAY)


PARSERS = {fmt: page_parser(fmt) for fmt in ("hf-json", "hf-html", "hf-text", "arxiv-rss", "arxiv-atom")}
PARSERS["auto"] = page_parser("auto")
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JUNK = [b"<", b"\x00", b'"', b"]", b"}", b"<!DOCTYPE x>", b"&amp;", b"\xff\xfe", b"\n\n", b"<item>", b"{"]


# A damage recipe: (fixture index, [(kind, position fraction, operand)]). Drawing the recipe
# rather than the bytes keeps a failing example short enough to read.
Recipe = tuple[int, list[tuple[str, float, int | bytes]]]
RECIPES = st.tuples(
    st.integers(0, 100),
    st.lists(
        st.tuples(
            st.sampled_from(["truncate", "flip", "insert", "cut"]),
            st.floats(0, 1),
            st.integers(1, 4096) | st.binary(min_size=1, max_size=64) | st.sampled_from(JUNK),
        ),
        min_size=1,
        max_size=4,
    ),
)


def damage(recipe: Recipe) -> bytes:
    """A recorded page, truncated, with flipped bytes, inserted junk or a cut-out slice."""
    index, steps = recipe
    data = bytearray(FIXTURES[index % len(FIXTURES)])
    for kind, where, operand in steps:
        at = int(where * len(data))
        number = operand if isinstance(operand, int) else len(operand)
        junk = operand if isinstance(operand, bytes) else JUNK[number % len(JUNK)]
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and at < len(data):
            data[at] ^= number % 255 + 1
        elif kind == "insert":
            data[at:at] = junk
        else:
            del data[at : at + number]
    return bytes(data)


def check(parser: Callable[[bytes], list[Paper]], data: bytes) -> None:
    try:
        papers = parser(data)
    except ParseError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(papers, list)
    for paper in papers:
        assert isinstance(paper, Paper)
        assert paper.title and paper.title == " ".join(paper.title.split())
        assert paper.arxiv_id is None or clean_arxiv_id(paper.arxiv_id) == paper.arxiv_id
        assert paper.key == (f"arxiv:{paper.arxiv_id}" if paper.arxiv_id else title_key(paper.title))
        as_json = paper.to_json()
        assert Paper.model_validate(json.loads(json.dumps(as_json))).to_json() == as_json


@pytest.mark.parametrize("fmt", list(PARSERS))
@FAST
@given(data=st.binary(max_size=4096))
def test_random_bytes(fmt: str, data: bytes) -> None:
    check(PARSERS[fmt], data)


@pytest.mark.parametrize("fmt", list(PARSERS))
@FAST
@given(recipe=RECIPES)
def test_damaged_recorded_pages(fmt: str, recipe: Recipe) -> None:
    check(PARSERS[fmt], damage(recipe))


@FAST
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["paper", "title", "id", "authors", "name", "upvotes", "organization",
                             "fullname", "submittedOnDailyAt", "publishedAt", "summary", "dailyPapers"]),
            inner, max_size=6,
        ),
        max_leaves=30,
    )
)
def test_json_of_any_shape(value: object) -> None:
    check(PARSERS["hf-json"], json.dumps(value).encode())


ABSTRACT = "We study a problem that matters and show that our method works well on many benchmarks."
NO_WORDS = ["", "...", "\u200b", "\u00ad", "—", "\u200b\u200b \u2060"]


def _pages_with_title(title: str) -> dict[str, bytes]:
    """A page of each format with two papers: the first titled ``title``, the second a real one."""
    xml_title = title.encode()
    return {
        "hf-json": json.dumps([{"paper": {"title": title, "authors": [{"name": "A B"}]}},
                               {"paper": {"id": "2401.00002", "title": "Real"}},
                               {"paper": {"id": "2401.00003", "title": "Real too"}}]).encode(),
        "hf-html": b"<html><body><article><h3><a href='/papers/2401.00001'>" + xml_title
                   + b"</a></h3></article><article><h3><a href='/papers/2401.00002'>Real</a></h3></article>"
                   b"</body></html>",
        "hf-text": f"{title}\n\n{ABSTRACT}\n\n  \u2022 2 authors\n\u00b7\nOct 8, 2024\n\n"
                   f"Real\n\n{ABSTRACT}\n\n  \u2022 3 authors\n\u00b7\nOct 9, 2024\n".encode(),
        "arxiv-rss": b"<rss><channel><item><title>" + xml_title + b" (arXiv:2401.00001v1 [cs.CL])</title>"
                     b"<link>https://arxiv.org/abs/2401.00001</link></item></channel></rss>",
        "arxiv-atom": b"<feed xmlns='http://www.w3.org/2005/Atom'><entry><title>" + xml_title + b"</title>"
                      b"<id>http://arxiv.org/abs/2401.00001v1</id></entry></feed>",
    }


@pytest.mark.parametrize("title", NO_WORDS)
@pytest.mark.parametrize("fmt", ["hf-json", "hf-html", "hf-text", "arxiv-rss", "arxiv-atom"])
def test_a_title_without_a_letter_or_digit_is_no_paper(fmt: str, title: str) -> None:
    """A title of dots, dashes or invisible characters normalizes to nothing: every such paper had the
    key of the empty title (title:e3b0c44298fc1c14), one alert for all of them, with a blank title.
    It is a paper without a title: left out, or the page refused (as each format does with no title)."""
    try:
        papers = parse_page(_pages_with_title(title)[fmt], fmt, today=TODAY)
    except ParseError as exc:
        assert "without a title" in str(exc) or "no papers" in str(exc)
        return
    assert all(normalize_title(paper.title) for paper in papers), papers
    assert "Real" in [paper.title for paper in papers]
