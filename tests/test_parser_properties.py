"""Every parser on random and damaged bytes: a list of valid papers or a ParseError, nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import ParseError
from monitor.models import Paper, clean_arxiv_id, title_key
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
