"""Big sorted name lists walked in slices (server/repos/namelists.py) and pages kept compact
(simple_page_cache.CachedPage.from_pieces): the same answers as the plain way, whatever the cuts."""
from __future__ import annotations

import gzip
import hashlib
import random

import pytest
from devpi.server.repos.namelists import SortedSlices, merge_sorted, text_chunks
from devpi.server.repos.simple_page_cache import CachedPage, page_answer
from devpi.server.repos.simple_render import iter_list_html, iter_list_json


def names(rnd: random.Random, n: int) -> list[str]:
    return [f"{rnd.choice('abcxyz')}{rnd.randrange(10 ** rnd.randint(1, 6))}" for _ in range(n)]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 1000, 1 << 20])
def test_text_chunks_give_every_name_once_in_order(chunk_bytes):
    want = sorted(set(names(random.Random(1), 5000)))
    got = [n for chunk in text_chunks("\n".join(want), chunk_bytes) for n in chunk]
    assert got == want
    assert list(text_chunks("")) == []


@pytest.mark.parametrize("seed", range(5))
def test_sorted_slices_and_merges_equal_sorting_a_set(seed):
    rnd = random.Random(seed)
    raw = names(rnd, 20_000)
    slices = SortedSlices()
    pos = 0
    while pos < len(raw):  # slices of random size, in random order: several runs to merge
        step = rnd.randint(1, 3000)
        slices.add(raw[pos:pos + step])
        pos += step
    want = sorted(set(raw))
    text = slices.text()
    assert text.split("\n") == want
    others = [sorted(set(names(rnd, 300))) for _ in range(2)]
    sources = [text_chunks(text, rnd.randint(10, 5000))] + [[o[:100], o[100:]] for o in others]
    merged = [n for chunk in merge_sorted(sources) for n in chunk]
    assert merged == sorted(set(want).union(*others))
    assert SortedSlices().text() == "" and list(merge_sorted([[], [[]]])) == []


def test_a_page_made_of_pieces_is_kept_as_gzip_only_past_the_limit():
    chunks = [sorted({f"proj-{i:06d}" for i in range(k, k + 5000)}) for k in range(0, 60_000, 5000)]
    whole = b"".join(iter_list_html(chunks, "root/pypi"))
    small = CachedPage.from_pieces(iter_list_html(chunks, "root/pypi"), {}, compact_min=len(whole) + 1)
    big = CachedPage.from_pieces(iter_list_html(chunks, "root/pypi"), {}, compact_min=1 << 16)
    assert small.body == whole and big.body is None
    assert big.etag == small.etag == '"' + hashlib.sha256(whole).hexdigest()[:40] + '"'
    assert big.length == len(whole) and gzip.decompress(big.gzipped()) == whole
    assert b"".join(big.identity()) == whole and big.size < len(whole) // 3
    status, headers, body = page_answer(big, "text/html", None, None, False)
    assert status == "200 OK" and b"".join(body) == whole
    assert dict(headers)["Content-Length"] == str(len(whole)) and "Content-Encoding" not in dict(headers)
    status, headers, body = page_answer(big, "text/html", "gzip", None, False)
    assert gzip.decompress(body) == whole and dict(headers)["Content-Encoding"] == "gzip"
    json_whole = b"".join(iter_list_json(chunks))
    assert b"".join(CachedPage.from_pieces(iter_list_json(chunks), {}, compact_min=1000).identity()) == json_whole
