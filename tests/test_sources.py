"""The page parsers on the recorded real pages: what a user would check in the parse output."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from monitor.errors import ParseError
from monitor.models import Paper
from monitor.sources import decode, detect_format, parse_page
from tests.helpers import (
    ARXIV_ATOM,
    ARXIV_ATOM_LEGACY,
    ARXIV_RSS_EMPTY,
    DATA,
    HF_HTML,
    HF_JSON,
    SEED_PAGES,
)

TODAY = date(2026, 6, 14)
HF_JSON_2024 = DATA / "hf_api_daily_papers_2024-08-01.json"
HF_PAPER = DATA / "hf_api_paper_2606.12575.json"
HF_SEARCH = DATA / "hf_api_papers_search.json"
ARXIV_RSS = DATA / "arxiv_rss_cs_sample.xml"
HTML_2024_IDS = [
    "2407.21783", "2407.21705", "2407.21770", "2407.21646", "2407.21772", "2407.21630", "2407.21721",
    "2407.21530", "2407.20229", "2407.21781", "2407.21686", "2407.21475", "2404.01300",
]


def parse(source: Path | bytes, fmt: str = "auto") -> list[Paper]:
    return parse_page(source if isinstance(source, bytes) else source.read_bytes(), fmt, today=TODAY)


def one_line_error(data: bytes, fmt: str = "auto") -> str:
    with pytest.raises(ParseError) as caught:
        parse_page(data, fmt, today=TODAY)
    message = str(caught.value)
    assert message and "\n" not in message
    return message


def without_daily_papers_data(html: bytes) -> bytes:
    """The listing page as a redesign might leave it: the cards, but no DailyPapers data-props."""
    stripped, count = re.subn(rb'\sdata-target="DailyPapers" data-props="[^"]*"', b"", html)
    assert count == 1
    return stripped


# --- hf-json -------------------------------------------------------------------------------------


def test_hf_api_daily_papers_current_schema() -> None:
    papers = parse(HF_JSON)
    assert len(papers) == 30
    assert len({p.key for p in papers}) == 30
    assert all(p.source == "hf-json" and p.published == date(2026, 6, 12) for p in papers)
    first = papers[0].to_json()
    assert first["abstract"].startswith("Large Language Models (LLMs) are increasingly used for zero-shot")
    assert first | {"abstract": None} == {
        "key": "arxiv:2606.00467",
        "arxiv_id": "2606.00467",
        "title": "On the Limits of LLM Adaptability: Impact of Model-Internalized Priors on Annotation "
        "Task Performance",
        "abstract": None,
        "authors": ["Etienne Casanova", "Rafal Kocielnik", "R. Michael Alvarez"],
        "authors_count": 3,
        "organization": "California institute of technology",
        "published": "2026-06-12",
        "upvotes": 0,
        "url": "https://huggingface.co/papers/2606.00467",
        "source": "hf-json",
    }
    assert papers[0].organization_id == "caltech"


def test_hf_api_hidden_authors_organizations_and_upvotes() -> None:
    papers = {p.arxiv_id: p for p in parse(HF_JSON)}
    distill = papers["2606.12575"]
    # Dengyang Jiang is a claimed author with ``hidden: true``: hidden from avatars, still an author.
    assert distill.authors == [
        "Dongyang Liu", "Ruoyi Du", "David Liu", "Dengyang Jiang", "Liangchen Li", "Qilong Wu",
        "Zhen Li", "Steven C. H. Hoi", "Hongsheng Li", "Peng Gao",
    ]
    assert (distill.organization, distill.organization_id, distill.upvotes) == ("Tongyi-MAI", "Tongyi-MAI", 7)
    mit = papers["2606.13681"]
    assert mit.title == "EvoArena: Tracking Memory Evolution for Robust LLM Agents in Dynamic Environments"
    assert (mit.organization, mit.organization_id, mit.upvotes, mit.authors_count) == (
        "Massachusetts Institute of Technology", "MIT", 118, 14
    )
    assert papers["2606.13392"].upvotes == 103 and papers["2606.13392"].organization == "MiniMax"
    assert papers["2606.12730"].organization is None and papers["2606.12730"].organization_id is None
    assert sum(1 for p in papers.values() if p.organization) == 16


def test_hf_api_hard_line_breaks_are_collapsed() -> None:
    raw = json.loads(HF_JSON.read_bytes())
    assert "\n" in raw[25]["paper"]["summary"]
    papers = parse(HF_JSON)
    for paper in papers:
        assert "\n" not in paper.title and "  " not in paper.title
        assert paper.abstract and "\n" not in paper.abstract and "  " not in paper.abstract
    assert papers[25].abstract.startswith("Search Agents -- large language models augmented with search")  # type: ignore[union-attr]


def test_hf_api_2024_schema_dates_from_top_level_published_at() -> None:
    papers = parse(HF_JSON_2024)
    assert [p.arxiv_id for p in papers] == ["2407.21705", "2407.21781", "2404.01300"]
    # No submittedOnDailyAt: the Daily Papers day is the item's publishedAt, not the arXiv date.
    assert [p.published for p in papers] == [date(2024, 8, 1)] * 3
    assert papers[1].authors == [
        "Qiayuan Liao", "Bike Zhang", "Xuanyu Huang", "Xiaoyu Huang", "Zhongyu Li", "Koushil Sreenath",
    ]
    assert papers[2].title == (
        "NeRF-MAE: Masked AutoEncoders for Self-Supervised 3D Representation Learning for Neural "
        "Radiance Fields"
    )
    assert [p.upvotes for p in papers] == [24, 7, 3]
    assert all(p.organization is None for p in papers)


def test_hf_api_published_falls_back_to_the_arxiv_date_last() -> None:
    item = {"paper": {"id": "2401.00001v2", "title": "T", "publishedAt": "2024-01-02T10:00:00.000Z"}}
    (paper,) = parse(json.dumps([item]).encode())
    assert (paper.key, paper.published) == ("arxiv:2401.00001", date(2024, 1, 2))  # no version suffix
    item["publishedAt"] = "2024-01-05T01:00:00.000Z"  # type: ignore[assignment]
    assert parse(json.dumps([item]).encode())[0].published == date(2024, 1, 5)


def test_hf_api_search_results_and_single_paper() -> None:
    assert [(p.arxiv_id, p.title, p.upvotes, p.organization) for p in parse(HF_SEARCH)] == [
        ("2606.13392", "MiniMax Sparse Attention", 103, "MiniMax"),
        (
            "2606.13174",
            "Getting Better at Working With You: Compiling User Corrections into Runtime Enforcement "
            "for Coding Agents",
            2,
            None,
        ),
    ]
    (single,) = parse(HF_PAPER)
    assert single.to_json() == parse(HF_JSON)[20].to_json()
    # Search results without the ``paper`` wrapper (flat paper objects) read the same.
    flat = json.loads(HF_SEARCH.read_bytes())
    assert parse(json.dumps([item["paper"] for item in flat]).encode())[0].upvotes == 103


def test_hf_api_empty_day_is_not_an_error() -> None:
    assert parse(b"[]") == parse(b"  [ ]\n") == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (HF_JSON.read_bytes()[:5000], "not valid JSON"),
        (b'{"error": "Invalid date"}', "Hugging Face API error: Invalid date"),
        (b'{"papers": [], "\\u001b[31mred": 1}', "not a Hugging Face paper (keys: [31mred, papers)"),
        (b'[{"paper": {"id": "2401.00001", "summary": "no title"}}]', "item 0: a paper without a title"),
        (b'[{"paper": {"id": "2401.00001", "title": "  "}}]', "item 0: a paper without a title"),
        # Control characters and bidirectional overrides are cleaned out of titles: none is left.
        (b'[{"paper": {"id": "2401.00001", "title": "\\b \\u202e"}}]', "item 0: a paper without a title"),
        (b"[1, 2, 3]", "item 0"),
        (b'"a string"', "JSON str"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_hf_api_garbage_is_a_parse_error(data: bytes, reason: str) -> None:
    assert reason in one_line_error(data, "hf-json")


def test_hf_api_one_item_without_a_title_leaves_the_other_papers(caplog: pytest.LogCaptureFixture) -> None:
    items = json.loads(HF_JSON.read_bytes())
    del items[3]["paper"]["title"], items[3]["title"]
    papers = parse(json.dumps(items).encode())
    assert len(papers) == len(items) - 1 and items[3]["paper"]["id"] not in {p.arxiv_id for p in papers}
    assert "left out item 3: a paper without a title" in caplog.text
    half = [items[0], {"paper": {"id": "2401.00002"}}]  # mostly broken: no page
    assert "item 1: a paper without a title" in one_line_error(json.dumps(half).encode(), "hf-json")


# --- hf-html -------------------------------------------------------------------------------------


def test_hf_listing_page_reads_the_daily_papers_data() -> None:
    papers = parse(HF_HTML)
    assert [p.arxiv_id for p in papers] == HTML_2024_IDS
    assert all(p.source == "hf-html" and p.published == date(2024, 8, 1) for p in papers)
    llama = papers[0]
    assert (llama.title, llama.upvotes, llama.authors_count, len(llama.authors)) == (
        "The Llama 3 Herd of Models", 94, 533, 533
    )
    assert llama.authors[:3] == ["Abhimanyu Dubey", "Abhinav Jauhri", "Abhinav Pandey"]
    assert llama.abstract and llama.abstract.startswith("Modern artificial intelligence (AI) systems")
    assert "Xuanyu Huang" in papers[9].authors  # hidden author
    assert papers[3].title.endswith("Simultaneous Speech Translation via LLM Agent")  # had a line break
    assert papers[12].url == "https://huggingface.co/papers/2404.01300"


def test_hf_listing_without_data_falls_back_to_the_cards() -> None:
    full = parse(HF_HTML)
    cards = parse(without_daily_papers_data(HF_HTML.read_bytes()))
    assert [p.key for p in cards] == [p.key for p in full]
    assert [p.title for p in cards] == [p.title for p in full]
    assert [p.upvotes for p in cards] == [94, 24, 19, 16, 11, 8, 8, 8, 7, 7, 7, 5, 3]
    assert [p.authors_count for p in cards] == [p.authors_count for p in full]
    assert all(p.authors == [] and p.abstract is None for p in cards)
    assert all(p.published == date(2024, 8, 1) and p.source == "hf-html" for p in cards)


def test_hf_listing_with_broken_data_still_reads_the_cards() -> None:
    html = HF_HTML.read_bytes().replace(b'data-props="{&quot;canSubmit', b'data-props="{&quot;canSub', 1)
    assert [p.arxiv_id for p in parse(html)] == HTML_2024_IDS


def test_hf_listing_of_an_empty_day() -> None:
    props = json.dumps({"date": "2024-08-03T00:00:00.000Z", "dailyPapers": []}).replace('"', "&quot;")
    html = f'<html><body><div data-target="DailyPapers" data-props="{props}"></div></body></html>'
    assert parse(html.encode()) == []


def test_html_of_another_site_is_a_parse_error() -> None:
    html = b"<!doctype html><html><head><title>Blog</title></head><body><article><h2>Hi</h2></article>"
    assert "without Hugging Face papers" in one_line_error(html)
    assert "without Hugging Face papers" in one_line_error(html, "hf-html")


# --- arXiv ---------------------------------------------------------------------------------------


def test_arxiv_api_atom() -> None:
    papers = parse(ARXIV_ATOM)
    assert [(p.arxiv_id, p.published, len(p.authors)) for p in papers] == [
        ("2606.13677", date(2026, 6, 11), 4),
        ("2606.13591", date(2026, 6, 11), 2),
        ("2606.13568", date(2026, 6, 11), 1),
        ("2606.13515", date(2026, 6, 11), 7),
        ("2606.13501", date(2026, 6, 11), 9),
    ]
    mana = papers[0].to_json()
    assert mana["abstract"].endswith("demonstrating a scalable approach to dexterous articulated tool use.")
    assert "(<1 minute per tool)" in mana["abstract"]
    assert mana | {"abstract": None} == {
        "key": "arxiv:2606.13677",
        "arxiv_id": "2606.13677",
        "title": "Mana: Dexterous Manipulation of Articulated Tools",
        "abstract": None,
        "authors": ["Zhao-Heng Yin", "Guanya Shi", "Pieter Abbeel", "C. Karen Liu"],
        "authors_count": 4,
        "organization": None,
        "published": "2026-06-11",
        "upvotes": None,
        "url": "https://arxiv.org/abs/2606.13677",
        "source": "arxiv-atom",
    }


def test_arxiv_api_atom_legacy_style() -> None:
    papers = parse(ARXIV_ATOM_LEGACY)
    assert [p.key for p in papers] == ["arxiv:2510.14968", "arxiv:2510.14827"]
    rdd = papers[0]
    assert rdd.title == "RDD: Retrieval-Based Demonstration Decomposer for Planner Alignment in " + (
        "Long-Horizon Tasks"  # across a line break in the feed
    )
    assert rdd.abstract and rdd.abstract.startswith("To tackle long-horizon tasks, recent hierarchical")
    assert rdd.authors == ["Mingxuan Yan", "Yuping Wang", "Zechun Liu", "Jiachen Li"]
    assert rdd.url == "https://arxiv.org/abs/2510.14968" and rdd.published == date(2025, 10, 16)
    assert papers[1].authors[-1] == "Martin Magnusson"


def test_arxiv_api_error_and_empty_results() -> None:
    error = (
        b'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom"><entry>'
        b"<id>http://arxiv.org/api/errors#incorrect_id_format_for_1234.12345v</id><title>Error</title>"
        b"<summary>incorrect id format for 1234.12345v</summary></entry></feed>"
    )
    assert one_line_error(error) == "arXiv API error: incorrect id format for 1234.12345v"
    empty = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>ArXiv Query</title></feed>'
    assert parse(empty) == []


def test_arxiv_rss_listing() -> None:
    papers = parse(ARXIV_RSS)
    assert [p.to_json() for p in papers[:1]] == [
        {
            "key": "arxiv:2606.10001",
            "arxiv_id": "2606.10001",
            "title": "Speculative Decoding with a Shared KV Cache",
            "abstract": "We share one KV cache between the draft and the target model, halving the memory "
            "of speculative decoding.",
            "authors": ["Ana María López", "Tri Dao", "Song Han"],
            "authors_count": 3,
            "organization": None,
            "published": "2026-06-11",
            "upvotes": None,
            "url": "https://arxiv.org/abs/2606.10001",
            "source": "arxiv-rss",
        }
    ]
    assert papers[1].title == "Quantized Adapters for Low-Resource Translation"
    assert papers[1].abstract == "Adapters quantized to four bits keep translation quality."
    assert papers[2].arxiv_id == "2511.04321"  # a replacement (v3): the id carries no version
    # A bare < or > in an abstract is text, not a tag.
    assert papers[2].abstract == (
        "We survey routing in mixture-of-experts models with $k<n$ experts and load > 1."
    )
    assert papers[2].authors == ["Maria Rossi", "Kenji Tanaka", "Olu Adeyemi", "Sarah O'Neil"]
    # How the listing announces each, for the source's announce_types (not part of the JSON).
    assert [p.announce for p in papers] == ["new", "cross", "replace"]
    assert all("announce" not in p.to_json() for p in papers)


def test_arxiv_rss_announce_type_from_the_description_when_the_element_is_missing() -> None:
    sample = ARXIV_RSS.read_text(encoding="utf-8")
    without = re.sub(r"\s*<arxiv:announce_type>[^<]*</arxiv:announce_type>", "", sample)
    assert without != sample
    without = without.replace("Announce Type: replace", "Announce Type: replace-cross")
    papers = parse(without.encode())
    assert [p.announce for p in papers] == ["new", "cross", "replace-cross"]
    assert papers[2].abstract is not None and papers[2].abstract.startswith("We survey routing")


def test_arxiv_rss_holiday_is_an_empty_listing() -> None:
    assert parse(ARXIV_RSS_EMPTY) == []


def test_arxiv_rss_1_0_older_feed() -> None:
    rdf = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"><channel rdf:about="http://arxiv.org/rss/cs.LG">'
        "<title>cs.LG updates on arXiv.org</title><dc:date>2023-03-01T20:30:00-05:00</dc:date></channel>"
        '<item rdf:about="http://arxiv.org/abs/2303.00001"><title>Old Style Paper. (arXiv:2303.00001v1 '
        "[cs.LG])</title><link>http://arxiv.org/abs/2303.00001</link><description>&lt;p&gt;An "
        "abstract.&lt;/p&gt;</description><dc:creator>&lt;a href=\"http://arxiv.org/find/cs/1/au:+Doe_J/0/1/0"
        '/all/0/1"&gt;Jane Doe&lt;/a&gt;, &lt;a href="x"&gt;Max Mustermann&lt;/a&gt;</dc:creator></item>'
        "</rdf:RDF>"
    )
    (paper,) = parse(rdf.encode())
    assert (paper.arxiv_id, paper.title, paper.abstract, paper.authors, paper.published) == (
        "2303.00001", "Old Style Paper.", "An abstract.", ["Jane Doe", "Max Mustermann"], date(2023, 3, 1)
    )
    assert paper.announce is None  # older feeds do not say


def rdf_item(inner: str, about: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">'
        f'<channel rdf:about="http://arxiv.org/rss/cs.CL"><title>cs.CL</title></channel><item{about}>'
        f"{inner}</item></rdf:RDF>"
    ).encode()


CITING = ("<description>&lt;p&gt;We extend the method of arXiv:2101.00001 (see /abs/2101.00002).&lt;/p&gt;"
          "</description>")


@pytest.mark.parametrize(
    "item",
    [rdf_item(f"<title>A Paper. (arXiv:2303.00001v1 [cs.CL])</title>{CITING}"
              "<link>http://arxiv.org/abs/2303.00001</link>", ' rdf:about="http://arxiv.org/abs/2303.00001"'),
     rdf_item(f"<title>A Paper. (arXiv:2303.00001v1 [cs.CL])</title>{CITING}",
              ' rdf:about="http://arxiv.org/abs/2303.00001"'),
     rdf_item(f"<title>A Paper. (arXiv:2303.00001v1 [cs.CL])</title>{CITING}"),
     rdf_item("<title>A Paper.</title><description>arXiv:2303.00001v1 Announce Type: new Abstract: We "
              "extend the method of arXiv:2101.00001.</description>")],
)
def test_arxiv_rss_an_id_cited_in_the_description_is_not_the_items_own(item: bytes) -> None:
    (paper,) = parse(item, "arxiv-rss")
    assert (paper.arxiv_id, paper.title, paper.url) == ("2303.00001", "A Paper.", "https://arxiv.org/abs/2303.00001")


def test_arxiv_a_title_of_nothing_but_a_bidirectional_override_is_no_title() -> None:
    reason = one_line_error(rdf_item("<title>\u202e </title>"), "arxiv-rss")
    assert "item 0: a paper without a title" in reason


def test_arxiv_rss_an_item_without_an_id_of_its_own_has_none() -> None:
    (paper,) = parse(rdf_item(f"<title>A Paper citing arXiv:2101.00003</title>{CITING}"), "arxiv-rss")
    assert (paper.arxiv_id, paper.key.startswith("title:")) == (None, True)


def test_xml_entity_declarations_are_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<rss><channel><item><title>&b;</title></item></channel></rss>"
    )
    assert "DOCTYPE" in one_line_error(bomb, "arxiv-rss")
    assert "DOCTYPE" in one_line_error(bomb)


def test_wrong_format_given_explicitly_is_a_parse_error() -> None:
    assert "not an Atom feed" in one_line_error(ARXIV_RSS.read_bytes(), "arxiv-atom")
    assert "not an RSS feed" in one_line_error(ARXIV_ATOM.read_bytes(), "arxiv-rss")
    assert "not valid JSON" in one_line_error(ARXIV_ATOM.read_bytes(), "hf-json")
    assert "unknown format" in one_line_error(b"[]", "csv")


# --- detection and decoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        (HF_JSON, "hf-json"),
        (HF_JSON_2024, "hf-json"),
        (HF_PAPER, "hf-json"),
        (HF_HTML, "hf-html"),
        (ARXIV_ATOM, "arxiv-atom"),
        (ARXIV_ATOM_LEGACY, "arxiv-atom"),
        (ARXIV_RSS_EMPTY, "arxiv-rss"),
        (ARXIV_RSS, "arxiv-rss"),
        *[(seed, "hf-text") for seed in SEED_PAGES],
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_detect_format_of_every_fixture(path: Path, fmt: str) -> None:
    assert detect_format(path.read_bytes()) == fmt


def test_detect_format_edge_cases() -> None:
    assert detect_format(b"[]") == "hf-json"
    assert detect_format(b'[{"paper": {"id": "2401.0') == "hf-json"  # truncated: hf-json says why
    assert detect_format(b"[Re] Reproducing a paper\nAn abstract.\n") == "hf-text"
    assert detect_format(without_daily_papers_data(HF_HTML.read_bytes())) == "hf-html"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty input"),
        (b" \n\t ", "empty input"),
        (bytes(range(256)) * 4, "binary data"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "binary data"),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'></svg>", "neither RSS nor Atom"),
    ],
)
def test_unreadable_input_is_a_one_line_parse_error(data: bytes, reason: str) -> None:
    assert reason in one_line_error(data)


def test_decode_honours_boms_and_declared_charsets() -> None:
    text = '[{"paper": {"id": "2401.00001", "title": "Café ünïcode"}}]'
    for data in (
        b"\xef\xbb\xbf" + text.encode("utf-8"),
        text.encode("utf-16"),  # with its BOM
        text.encode("utf-8"),
    ):
        assert decode(data) == text
        assert parse(data)[0].title == "Café ünïcode"
    latin = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        "<rss><channel><item><title>Café</title></item></channel></rss>"
    )
    assert parse(latin.encode("latin-1"))[0].title == "Café"
    assert decode("naïve plain text".encode("cp1252")) == "naïve plain text"
    # A stray byte in a UTF-8 page is lost alone, not the page's every "é" and "—" to mojibake.
    assert decode("Café — naïve ".encode() + b"caf\xe9") == "Café — naïve caf\ufffd"
    # UTF-8 wins over a "charset=" that is only text inside an abstract.
    assert decode('[{"title": "charset=latin-1 considered harmful — café"}]'.encode()).endswith('café"}]')


def atom_listing(authors_as: str) -> bytes:
    """An arXiv Atom listing (rss.arxiv.org/atom/<cats>) of the RSS sample's papers."""
    entries = []
    for paper in parse(ARXIV_RSS):
        names = ", ".join(paper.authors)
        authors = (f"<dc:creator>{names}</dc:creator>" if authors_as == "dc:creator"
                   else f"<author><name>{names}</name></author>")
        entries.append(
            f"<entry><id>oai:arXiv.org:{paper.arxiv_id}v2</id><title>{paper.title}</title>"
            f'<link href="https://arxiv.org/abs/{paper.arxiv_id}" rel="alternate" type="text/html"/>'
            f"<summary>arXiv:{paper.arxiv_id}v2 Announce Type: {paper.announce} \nAbstract: {paper.abstract}"
            f"</summary><published>2026-06-11T00:00:00-04:00</published>"
            f"<arxiv:announce_type>{paper.announce}</arxiv:announce_type>{authors}</entry>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"'
        ' xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<title>cs.LG updates on arXiv.org</title>" + "".join(entries).replace("$k<n$", "$k&lt;n$")
        .replace("load > 1", "load &gt; 1") + "</feed>"
    ).encode()


@pytest.mark.parametrize("authors_as", ["dc:creator", "one author element"])
def test_arxiv_atom_listing_reads_like_the_rss_one(authors_as: str) -> None:
    rss, atom = parse(ARXIV_RSS), parse(atom_listing(authors_as))
    assert detect_format(atom_listing(authors_as)) == "arxiv-atom"
    assert [p.announce for p in atom] == ["new", "cross", "replace"]
    assert [(p.key, p.title, p.abstract, p.authors, p.published) for p in atom] == [
        (p.key, p.title, p.abstract, p.authors, p.published) for p in rss
    ]
