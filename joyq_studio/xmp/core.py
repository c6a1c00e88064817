"""A small, strict XMP reader and splicing writer for star ratings and one keyword.

Reading: the packet is validated by :mod:`defusedxml` (no DTD, no entity, no external
reference: entity bombs are refused, not expanded), then walked once more with the plain
expat parser (safe now: there is nothing left to expand) to find, by byte offset, each
top-level ``rdf:Description``, the ``xmp:Rating`` and ``MicrosoftPhoto:Rating`` values
(attribute or element) and the ``rdf:li`` items of ``dc:subject`` and
``lr:hierarchicalSubject``. Namespace prefixes are resolved, so ``xap:Rating`` works too.

Writing never re-serialises the document: :func:`set_rating` replaces the text of the
rating attribute or element (or inserts one attribute into the first ``rdf:Description``)
and, optionally, our one keyword, keeping every other byte. Whatever cannot be understood
with certainty (not UTF-8, too large, a DTD, two ratings, a rating that is not a number)
raises :class:`XmpError` with one sentence, and nothing is written.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as defused_fromstring

from ..errors import JoyqError

#: A sidecar larger than this is refused unread (darktable's long histories stay far below).
MAX_XMP_BYTES = 8 << 20

NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_LR = "http://ns.adobe.com/lightroom/1.0/"
NS_MSPHOTO = ("http://ns.microsoft.com/photo/1.0/", "http://ns.microsoft.com/photo/1.0")
NS_X = "adobe:ns:meta/"

#: Our keyword: ``joyq|quality|<bucket>`` (0 = worst); anything starting with the prefix is ours.
KEYWORD_PREFIX = "joyq|quality|"

#: Windows' MicrosoftPhoto:Rating scale for 1..5 stars (0 = no rating); reading rounds to the nearest.
MS_PHOTO_SCALE = {0: 0, 1: 1, 2: 25, 3: 50, 4: 75, 5: 99}


class XmpError(JoyqError):
    """XMP we will not read or change; one sentence naming the file and the problem."""


@dataclass
class Span:
    start: int  # byte offsets of the value text (attribute value inside its quotes, or element text)
    end: int
    text: str


@dataclass
class _Bag:
    prop: str  # 'dc:subject' or 'lr:hierarchicalSubject' (resolved)
    bag_end: int | None = None  # offset of the bag's end tag '</rdf:Bag>' (None: self-closing bag)
    items: list[Span] = field(default_factory=list)
    empty_tag: tuple[int, int, str] | None = None  # (start, end, qname) of a self-closing '<rdf:Bag/>'


@dataclass
class XmpDoc:
    """Where the values we care about are, in the bytes of one packet."""

    data: bytes
    descriptions: list[tuple[int, int, str, bool]] = field(default_factory=list)  # (tag start, tag end, qname, empty)
    desc_ends: dict[int, int] = field(default_factory=dict)  # tag start -> offset of its end tag
    prefixes: list[dict[str, str]] = field(default_factory=list)  # in-scope prefix -> uri at each description
    ratings: list[Span] = field(default_factory=list)
    ms_ratings: list[Span] = field(default_factory=list)
    bags: list[_Bag] = field(default_factory=list)
    bag_props: set[str] = field(default_factory=set)

    @property
    def keywords(self) -> list[str]:
        return [s.text for b in self.bags for s in b.items]

    @property
    def ours(self) -> bool:
        """Whether it carries our keyword (an export of this project wrote the rating)."""
        return any(k.strip().startswith(KEYWORD_PREFIX) for k in self.keywords)


@dataclass(frozen=True)
class XmpRating:
    stars: int | None  # -1 (rejected) .. 5; None: no rating (0 counts as none, as in Lightroom)
    ours: bool  # carries our keyword
    from_ms_photo: bool = False
    from_exif: bool = False  # the EXIF Rating tag of an image, not XMP


_ATTR = re.compile(rb"""\s+([^\s=/>]+)\s*=\s*("[^"]*"|'[^']*')""")


def _check_bytes(data: bytes, where: str) -> None:
    if len(data) > MAX_XMP_BYTES:
        raise XmpError(
            f"{where}: is {len(data):,} bytes, more than the {MAX_XMP_BYTES >> 20} MiB"
            " an XMP packet may be; left untouched."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")) or b"\x00" in data[:4096]:
        raise XmpError(f"{where}: is not UTF-8 (UTF-16/32 XMP is not supported); left untouched.")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise XmpError(f"{where}: is not valid UTF-8 (byte {e.start}); left untouched.") from None
    m = re.match(rb"""(?:\xef\xbb\xbf)?\s*<\?xml[^>]*encoding\s*=\s*["']([^"']+)["']""", data)
    if m and m.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        name = m.group(1).decode("ascii", "replace")
        raise XmpError(f"{where}: declares the encoding {name}; only UTF-8 XMP is supported, left untouched.")


def parse(data: bytes, where: str = "XMP") -> XmpDoc:
    """Validate ``data`` and locate its ratings and keywords (XmpError if it is not XMP we trust)."""
    _check_bytes(data, where)
    try:
        root = defused_fromstring(data, forbid_dtd=True)
    except DefusedXmlException as e:
        raise XmpError(f"{where}: has a DTD or entity declarations ({type(e).__name__}); left untouched.") from None
    except ParseError as e:
        raise XmpError(f"{where}: is not well-formed XML ({e}); left untouched.") from None
    if root.tag not in (f"{{{NS_X}}}xmpmeta", f"{{{NS_RDF}}}RDF", f"{{{NS_X}}}xapmeta"):
        raise XmpError(f"{where}: is XML but not XMP (its root is {root.tag}); left untouched.")
    return _locate(data, where)


def _locate(data: bytes, where: str) -> XmpDoc:
    doc = XmpDoc(data)
    p = xml.parsers.expat.ParserCreate()  # no namespace processing: we resolve prefixes ourselves
    p.buffer_text = False
    stack: list[tuple[str, dict[str, str]]] = []  # (resolved name, prefix map) of open elements
    leaves: dict[int, int] = {}  # depth -> content start of open elements without a child element yet
    bags: list[_Bag] = []  # the keyword property being read (at most one open)
    desc: list[tuple[int, int]] = []  # (depth, tag start) of the open top-level description

    def resolve(qname: str, prefixes: dict[str, str]) -> str:
        pre, _, local = qname.rpartition(":")
        return f"{{{prefixes.get(pre, '?' + pre)}}}{local}" if pre else local

    def tag_end(i: int) -> tuple[int, bool]:
        quote = None
        while True:
            c = data[i : i + 1]
            if quote:
                if c == quote:
                    quote = None
            elif c in (b'"', b"'"):
                quote = c
            elif c == b">":
                return i + 1, data[i - 1 : i] == b"/"
            i += 1

    def start(name: str, attrs: dict[str, str]) -> None:
        prefixes = dict(stack[-1][1]) if stack else {}
        for k, v in attrs.items():
            if k.startswith("xmlns:"):
                prefixes[k[6:]] = v
            elif k == "xmlns":
                prefixes[""] = v
        full = resolve(name, prefixes)
        depth = len(stack)
        parent = stack[-1][0] if stack else ""
        stack.append((full, prefixes))
        leaves.pop(depth - 1, None)  # the parent has a child element: not a simple value
        pos = p.CurrentByteIndex
        end, empty = tag_end(pos)
        if full == f"{{{NS_RDF}}}Description" and parent == f"{{{NS_RDF}}}RDF":
            doc.descriptions.append((pos, end, name, empty))
            doc.prefixes.append(prefixes)
            desc.append((depth, pos))
            for m in _ATTR.finditer(data, pos + 1 + len(name.encode()), end):
                attr = resolve(m.group(1).decode(), prefixes)
                s, e = m.start(2) + 1, m.end(2) - 1
                _note(doc, attr, Span(s, e, data[s:e].decode()))
        elif desc and depth == desc[-1][0] + 1:
            if full in (f"{{{NS_DC}}}subject", f"{{{NS_LR}}}hierarchicalSubject"):
                doc.bag_props.add(full)
                bags.append(_Bag(full))
            leaves[depth] = end
        elif bags and depth == desc[-1][0] + 2 and empty and full in (f"{{{NS_RDF}}}Bag", f"{{{NS_RDF}}}Seq"):
            bags[-1].empty_tag = (pos, end, name)
        elif bags and depth == desc[-1][0] + 3 and full == f"{{{NS_RDF}}}li":
            leaves[depth] = end

    def end_(name: str) -> None:
        full, _ = stack.pop()
        depth = len(stack)
        pos = p.CurrentByteIndex
        # an end tag of its own, not a self-closing element (whose end event points past it)
        real_end = re.match(rb"</" + re.escape(name.encode()) + rb"\s*>", data[pos : pos + len(name) + 64]) is not None
        leaf = leaves.pop(depth, None)
        if not desc:
            return
        top = desc[-1][0]
        if depth == top:
            if real_end:
                doc.desc_ends[desc[-1][1]] = pos
            desc.pop()
        elif depth == top + 1:
            if bags and full == bags[-1].prop:
                doc.bags.append(bags.pop())
            elif leaf is not None:  # a self-closing one is an empty value (refused if it is a rating)
                _note(doc, full, Span(leaf, pos, data[leaf:pos].decode()) if real_end else Span(leaf, leaf, ""))
        elif bags and depth == top + 2 and full in (f"{{{NS_RDF}}}Bag", f"{{{NS_RDF}}}Seq"):
            bags[-1].bag_end = pos if real_end else None
        elif bags and depth == top + 3 and leaf is not None and real_end:
            bags[-1].items.append(Span(leaf, pos, data[leaf:pos].decode()))

    p.StartElementHandler = start
    p.EndElementHandler = end_
    try:
        p.Parse(data, True)
    except xml.parsers.expat.ExpatError as e:  # defusedxml accepted it, so this is unexpected
        raise XmpError(f"{where}: cannot be read ({e}); left untouched.") from None
    if not doc.descriptions:
        raise XmpError(f"{where}: has no rdf:Description; left untouched.")
    return doc


def _note(doc: XmpDoc, name: str, span: Span) -> None:
    if name == f"{{{NS_XMP}}}Rating":
        doc.ratings.append(span)
    elif any(name == f"{{{ns}}}Rating" for ns in NS_MSPHOTO):
        doc.ms_ratings.append(span)


def _number(span: Span, where: str, what: str) -> float:
    try:
        return float(span.text.strip())
    except ValueError:
        raise XmpError(f"{where}: its {what} {span.text.strip()!r} is not a number; left untouched.") from None


def _one(spans: list[Span], where: str, what: str) -> Span | None:
    if len(spans) > 1:
        raise XmpError(f"{where}: has {len(spans)} {what} values; left untouched.")
    return spans[0] if spans else None


def stars_of_ms_photo(value: float) -> int:
    """1..5 stars of a MicrosoftPhoto:Rating percentage (0 -> 0: no rating)."""
    if value <= 0:
        return 0
    return min(range(1, 6), key=lambda s: abs(MS_PHOTO_SCALE[s] - value))


def read_rating(doc: XmpDoc, where: str = "XMP") -> XmpRating:
    """The star rating of a parsed packet: xmp:Rating, else MicrosoftPhoto:Rating."""
    span = _one(doc.ratings, where, "xmp:Rating")
    if span is not None:
        v = _number(span, where, "xmp:Rating")
        if not -1 <= v <= 5:
            raise XmpError(f"{where}: its xmp:Rating {v:g} is outside -1..5; left untouched.")
        stars = -1 if v < 0 else int(round(v))
        return XmpRating(stars if stars != 0 else None, doc.ours)
    ms = _one(doc.ms_ratings, where, "MicrosoftPhoto:Rating")
    if ms is not None:
        s = stars_of_ms_photo(_number(ms, where, "MicrosoftPhoto:Rating"))
        return XmpRating(s or None, doc.ours, True)
    return XmpRating(None, doc.ours)


def read(data: bytes, where: str = "XMP") -> XmpRating:
    return read_rating(parse(data, where), where)


# -- writing ---------------------------------------------------------------------------------
def minimal_sidecar(stars: int) -> bytes:
    """A new sidecar holding only the rating (as exiv2 and Adobe write their packets)."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="JoyQuality Studio">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f'   xmp:Rating="{int(stars)}"/>\n'
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>\n'
    ).encode()


def _prefix_for(prefixes: dict[str, str], uri: str, wanted: str) -> tuple[str, str]:
    """(prefix, declaration to add or '') for ``uri`` at a description."""
    for pre, u in prefixes.items():
        if u == uri and pre:
            return pre, ""
    if wanted in prefixes:
        raise XmpError(f"the prefix {wanted}: is bound to {prefixes[wanted]}, not {uri}")
    return wanted, f' xmlns:{wanted}="{uri}"'


def _indent(data: bytes, pos: int) -> str:
    line_start = data.rfind(b"\n", 0, pos) + 1
    lead = data[line_start:pos]
    return lead.decode() if not lead.strip() else ""


def _bags(props: list[tuple[str, str]], rdf: str, keyword: str, ind: str) -> str:
    """New keyword properties, one line per tag as exiv2 writes them, each ending in a newline."""
    return "".join(
        f"{ind}<{pre}:{local}>\n{ind} <{rdf}:Bag>\n{ind}  <{rdf}:li>{keyword}</{rdf}:li>\n"
        f"{ind} </{rdf}:Bag>\n{ind}</{pre}:{local}>\n"
        for pre, local in props
    )


def set_rating(data: bytes | None, stars: int, keyword: str | None = None, where: str = "XMP") -> bytes:
    """The bytes of ``data`` with its rating set to ``stars`` (-1..5) and, when ``keyword``
    is given, our keyword (any earlier one of ours replaced) in dc:subject and
    lr:hierarchicalSubject; every other byte kept. ``data`` None: a new minimal sidecar.
    An existing MicrosoftPhoto:Rating is set to the same stars on its own scale."""
    if not -1 <= stars <= 5:
        raise ValueError(f"stars must be -1..5, not {stars}")
    if data is None:
        data = minimal_sidecar(stars)
        if keyword is None:
            return data
    doc = parse(data, where)
    read_rating(doc, where)  # a rating we cannot read is not one we overwrite
    _one(doc.ms_ratings, where, "MicrosoftPhoto:Rating")
    edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement), non-overlapping
    first_start, first_end, first_name, first_empty = doc.descriptions[0]
    first_prefixes = doc.prefixes[0]
    tag_insert: list[str] = []  # attributes / declarations to add to the first description's start tag
    children: list[tuple[str, str]] = []  # (prefix, name) of keyword properties to add to the first description
    try:
        if doc.ratings:
            s = doc.ratings[0]
            edits.append((s.start, s.end, str(int(stars)).encode()))
        else:
            pre, decl = _prefix_for(first_prefixes, NS_XMP, "xmp")
            tag_insert.append(f'{decl} {pre}:Rating="{int(stars)}"')
        if doc.ms_ratings:
            s = doc.ms_ratings[0]
            edits.append((s.start, s.end, str(MS_PHOTO_SCALE[max(stars, 0)]).encode()))
        if keyword is not None:
            kw = escape(keyword).encode()
            rdf = _prefix_for(first_prefixes, NS_RDF, "rdf")[0]
            for bag in doc.bags:
                mine = [s for s in bag.items if s.text.strip().startswith(KEYWORD_PREFIX)]
                if mine:
                    edits.append((mine[0].start, mine[0].end, kw))
                    # any second copy of ours goes with its whole <rdf:li> element
                    for extra in mine[1:]:
                        li_start = data.rfind(b"<", 0, extra.start)
                        li_end = data.index(b">", extra.end) + 1
                        edits.append((li_start, li_end, b""))
                elif bag.bag_end is not None:
                    ind = _indent(data, bag.bag_end)
                    li = f"<{rdf}:li>{escape(keyword)}</{rdf}:li>"
                    edits.append((bag.bag_end, bag.bag_end, (f" {li}\n{ind}" if ind else li).encode()))
                elif bag.empty_tag is not None:
                    start, stop, name = bag.empty_tag
                    edits.append((start, stop, f"<{name}><{rdf}:li>{escape(keyword)}</{rdf}:li></{name}>".encode()))
                else:
                    what = bag.prop.rpartition("}")[2]
                    raise XmpError(f"{where}: its {what} is not a list we can add a keyword to; left untouched.")
            for uri, wanted, local in ((NS_DC, "dc", "subject"), (NS_LR, "lr", "hierarchicalSubject")):
                if f"{{{uri}}}{local}" in doc.bag_props:
                    continue
                pre, decl = _prefix_for(first_prefixes, uri, wanted)
                if decl:
                    tag_insert.append(decl)
                children.append((pre, local))
    except XmpError as e:
        if str(e).startswith(where):
            raise
        raise XmpError(f"{where}: {e}; left untouched.") from None
    if tag_insert or children:
        close = first_end - (2 if first_empty else 1)
        new_tag = "".join(tag_insert)
        if not children:
            edits.append((close, close, new_tag.encode()))
        else:
            assert keyword is not None
            rdf = _prefix_for(first_prefixes, NS_RDF, "rdf")[0]
            if first_empty:
                ind = _indent(data, first_start)
                body = _bags(children, rdf, escape(keyword), ind + " ")
                edits.append((close, first_end, f"{new_tag}>\n{body}{ind}</{first_name}>".encode()))
            else:
                end_tag = doc.desc_ends[first_start]
                ind = _indent(data, end_tag)
                body = _bags(children, rdf, escape(keyword), ind + " ")
                edits.append((close, close, new_tag.encode()))
                edits.append((end_tag - len(ind), end_tag - len(ind), body.encode()))
    out = bytearray(data)
    for a, b, rep in sorted(edits, key=lambda t: t[0], reverse=True):
        out[a:b] = rep
    result = bytes(out)
    check = read_rating(parse(result, where), where)  # what we wrote must read back as asked
    if (check.stars or 0) != stars and not (stars == 0 and check.stars is None):
        raise XmpError(f"{where}: the rating could not be written safely; left untouched.")
    return result
