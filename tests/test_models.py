"""The paper JSON and its key: arXiv id where known, else the hash of the normalized title."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest

from monitor.models import Paper, clean_arxiv_id, normalize_title, title_key

FIELDS = ["key", "arxiv_id", "title", "abstract", "authors", "authors_count", "organization",
          "published", "upvotes", "url", "source"]


@pytest.mark.parametrize(
    ("title", "normalized"),
    [
        ("Attention Is All You Need", "attention is all you need"),
        ("  KV-Cache:\tCompression,  Revisited!  ", "kv cache compression revisited"),
        ("Ｆｕｌｌｗｉｄｔｈ ＬＬＭ", "fullwidth llm"),  # NFKC
        ("Straße der Modelle", "strasse der modelle"),  # casefold
        ("Café — déjà vu", "café déjà vu"),  # accents are kept, punctuation runs are one space
        ("x_y__z", "x y z"),
        ("", ""),
    ],
)
def test_normalize_title(title: str, normalized: str) -> None:
    assert normalize_title(title) == normalized


def test_title_key_is_the_first_16_hex_of_sha256_of_the_normalized_title() -> None:
    digest = hashlib.sha256(b"kv cache compression revisited").hexdigest()
    assert title_key("KV-Cache: Compression,\nRevisited") == f"title:{digest[:16]}"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("2401.12345", "2401.12345"), ("2401.12345v3", "2401.12345"), ("arXiv:2606.00467v1", "2606.00467"),
     ("1706.0376", "1706.0376"), ("hep-th/9901001v2", "hep-th/9901001"), ("not an id", None), (None, None),
     ("", None)],
)
def test_clean_arxiv_id(raw: str | None, clean: str | None) -> None:
    assert clean_arxiv_id(raw) == clean


def test_paper_json_has_exactly_the_interface_fields_in_order() -> None:
    paper = Paper.build(
        title="Fast\n  Decoding", source="hf-json", arxiv_id="2401.12345v2",
        abstract="  Line one\nline two ", authors=["Tri  Dao", " "], organization="Caltech",
        organization_id="caltech", published=date(2024, 1, 2), upvotes=5, url="https://x/2401.12345",
    )
    data = paper.to_json()
    assert list(data) == FIELDS
    assert data == {
        "key": "arxiv:2401.12345", "arxiv_id": "2401.12345", "title": "Fast Decoding",
        "abstract": "Line one line two", "authors": ["Tri Dao"], "authors_count": 1,
        "organization": "Caltech", "published": "2024-01-02", "upvotes": 5,
        "url": "https://x/2401.12345", "source": "hf-json",
    }
    assert json.loads(json.dumps(data)) == data
    assert paper.organization_id == "caltech"


def test_paper_without_id_is_keyed_by_title_and_keeps_a_stated_author_count() -> None:
    paper = Paper.build(title="Some  Title", source="hf-text", authors_count=6)
    assert paper.key == title_key("some title")
    assert (paper.arxiv_id, paper.authors, paper.authors_count, paper.abstract) == (None, [], 6, None)
