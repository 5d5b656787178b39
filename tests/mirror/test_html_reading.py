"""PEP 503 HTML pages read by regular expressions must read exactly as the standard
library's HTML parser reads them, or be handed to that parser."""
from __future__ import annotations

import random

from devpi.server.mirror.page import _Anchors, _fast_anchors, parse_project_page

ENTITIES = ["", "&amp;", "&gt;", "&lt;", "&#62;", "&#x3c;", "&quot;", "&nbsp;", "&bogus;", "&"]
# Each reads differently from a flat run of tags and text, or needs the real parser's rules.
HOSTILE = [
    "<!-- <a href='c.whl'>c.whl</a> -->",
    '<a href="self-closed.whl"/>',
    '<a href="nested.whl"><span>nested.whl</span></a>',
    '<a href="unclosed.whl">unclosed.whl',
    '<meta content="<a href=q.whl>q.whl</a>">',
    "<script>var s = '<a href=\"s.whl\">s.whl</a>';</script>",
    '<base href="http://127.0.0.1:9/elsewhere/">',
    '<a href="odd-end.whl">odd-end.whl</a foo>',
    "<![CDATA[<a href='x'>x</a>]]>",
    "<?php echo 1 ?>",
    '<a href="x.whl>x.whl</a>',
    "<a href=x.whl>a < b</a>",
]


def _parser(text: str):
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    return parser.anchors


def _value(rng: random.Random, text: str) -> str:
    quote = rng.choice(['"', "'", ""])
    if quote == "":
        text = text.replace(" ", "").replace("'", "").replace('"', "")
    else:
        text = text.replace(quote, "")
    return f"{quote}{text}{quote}"


def _anchor(rng: random.Random, i: int) -> str:
    name = f"pkg-{i}.{rng.randint(0, 9)}{rng.choice(ENTITIES)}-py3-none-any.whl"
    equals = rng.choice(["=", " = ", "\n=\t"])
    attrs = [rng.choice(["href", "HREF", "Href"]) + equals + _value(rng, f"../../files/{name}#sha256={'ab' * 32}")]
    if rng.random() < 0.4:
        attrs.append("data-requires-python=" + _value(rng, f"{rng.choice(['&gt;=', '>='])}3.{rng.randint(6, 13)}"))
    if rng.random() < 0.3:
        attrs.append(rng.choice(["data-yanked", "data-yanked=''", 'data-yanked="reason &amp; more"', "DATA-YANKED"]))
    if rng.random() < 0.2:
        attrs.append("data-core-metadata=" + _value(rng, rng.choice(["true", "sha256=" + "cd" * 32])))
    if rng.random() < 0.1:
        attrs.append("href=" + _value(rng, "second.whl"))  # repeated: the last one wins
    rng.shuffle(attrs)
    space = rng.choice([" ", "  ", "\n", "\t "])
    tag = rng.choice(["a", "A"])
    text = rng.choice([name, f" {name} ", f"\n{name}\n", ""])
    return f"<{tag}{space}{space.join(attrs)}{rng.choice(['', ' '])}>{text}</{tag}{rng.choice(['', ' '])}>"


def _page(rng: random.Random, hostile: bool) -> str:
    parts = [_anchor(rng, i) + rng.choice(["<br/>", "<br>", "\n", ""]) for i in range(rng.randint(0, 12))]
    if hostile:
        parts.insert(rng.randint(0, len(parts)), rng.choice(HOSTILE))
    head = rng.choice(["", "<!DOCTYPE html>", "<!doctype html>\n"])
    title = rng.choice(["", "<title>Links for pkg</title>", '<meta name="pypi:repository-version" content="1.1">'])
    return f"{head}<html><head>{title}</head><body><h1>Links</h1>{''.join(parts)}<abbr>x</abbr></body></html>"


def test_regular_expressions_read_flat_pages_as_the_parser_does_and_leave_the_rest_to_it():
    rng = random.Random(503)
    taken = handed_over = 0
    for n in range(4000):
        hostile = n % 4 == 0
        text = _page(rng, hostile)
        fast = _fast_anchors(text)
        if fast is None:
            assert hostile, f"a flat page was handed to the parser:\n{text}"
            handed_over += 1
        else:
            assert fast == _parser(text), text
            taken += 1
    assert taken >= 3000 and handed_over >= 600  # both ways really ran


def test_a_page_the_expressions_cannot_read_is_parsed_the_slow_way():
    body = (b'<html><head><base href="http://127.0.0.1:9/b/"></head><body>'
            b'<!-- <a href="commented-1.0.tar.gz">commented-1.0.tar.gz</a> -->'
            b'<a href="pkg-1.0.tar.gz">pkg-1.0.tar.gz</a></body></html>')
    (link,) = parse_project_page(body, "text/html", "http://127.0.0.1:9/simple/pkg/")
    assert link["url"] == "http://127.0.0.1:9/b/pkg-1.0.tar.gz"
