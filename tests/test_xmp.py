"""The strict XMP reader / splicing writer (joyq_studio.xmp) on sidecars as darktable,
digiKam, Lightroom and Capture One write them, hostile packets, and embedded ratings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from joyq_studio import xmp
from joyq_studio.xmp.embedded import embedded_rating

DATA = Path(__file__).parent / "data" / "xmp"
FIXTURES = {
    "darktable.CR3.xmp": 2,
    "digikam.JPG.xmp": 4,
    "lightroom.xmp": None,
    "captureone.xmp": 5,
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_reads_the_rating_of_each_program(name):
    assert xmp.read((DATA / name).read_bytes(), name).stars == FIXTURES[name]


EXPECTED = {  # what a rating change must do to each fixture, and nothing else
    "darktable.CR3.xmp": lambda old, s: old.replace(b'xmp:Rating="2"', b'xmp:Rating="%d"' % s),
    "digikam.JPG.xmp": lambda old, s: old.replace(b'xmp:Rating="4"', b'xmp:Rating="%d"' % s).replace(
        b'MicrosoftPhoto:Rating="75"', b'MicrosoftPhoto:Rating="%d"' % xmp.MS_PHOTO_SCALE[max(s, 0)]
    ),
    "lightroom.xmp": lambda old, s: old.replace(
        b'crs:CameraProfile="Adobe Standard">', b'crs:CameraProfile="Adobe Standard" xmp:Rating="%d">' % s
    ),
    "captureone.xmp": lambda old, s: old.replace(b"<xmp:Rating>5<", b"<xmp:Rating>%d<" % s),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
@pytest.mark.parametrize("stars", [-1, 1, 5])
def test_splice_changes_only_the_rating(name, stars):
    old = (DATA / name).read_bytes()
    new = xmp.set_rating(old, stars, where=name)
    assert xmp.read(new).stars == stars
    assert new == EXPECTED[name](old, stars)


def test_darktable_history_and_lightroom_crs_survive_byte_for_byte():
    dt = (DATA / "darktable.CR3.xmp").read_bytes()
    new = xmp.set_rating(dt, 5, keyword="joyq|quality|9")
    start, end = dt.index(b"<darktable:history>"), dt.index(b"</darktable:history>") + 20
    assert dt[start:end] in new
    assert (
        new.replace(b'xmp:Rating="5"', b'xmp:Rating="2"').replace(b"     <rdf:li>joyq|quality|9</rdf:li>\n", b"") == dt
    )
    lr = (DATA / "lightroom.xmp").read_bytes()
    new = xmp.set_rating(lr, 3, keyword="joyq|quality|4")
    head = lr[: lr.index(b'crs:CameraProfile="Adobe Standard"')]
    assert new.startswith(head)
    crs = lr[lr.index(b"<crs:ToneCurvePV2012>") : lr.index(b"<dc:format>")]
    assert crs in new
    assert xmp.read(new).stars == 3 and "joyq|quality|4" in xmp.parse(new).keywords


def test_keyword_replaced_not_duplicated_and_ms_photo_scale():
    dk = (DATA / "digikam.JPG.xmp").read_bytes()
    once = xmp.set_rating(dk, 2, keyword="joyq|quality|3")
    twice = xmp.set_rating(once, 5, keyword="joyq|quality|8")
    doc = xmp.parse(twice)
    assert [k for k in doc.keywords if k.startswith("joyq")] == ["joyq|quality|8"] * 2
    assert b'MicrosoftPhoto:Rating="99"' in twice and b'xmp:Rating="5"' in twice
    assert b'MicrosoftPhoto:Rating="25"' in once
    assert xmp.parse(twice).ours and not xmp.parse(dk).ours
    assert len(twice) == len(dk) + 2 * len(b"     <rdf:li>joyq|quality|8</rdf:li>\n")  # 75 -> 99, 4 -> 5


def test_empty_bag_gets_the_keyword_and_an_empty_rating_is_refused():
    head = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        b'xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
    )
    tail = b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    doc = head + b"<dc:subject><rdf:Bag/></dc:subject><dc:title>x</dc:title>" + tail
    new = xmp.set_rating(doc, 2, keyword="joyq|quality|4")
    assert b"<dc:subject><rdf:Bag><rdf:li>joyq|quality|4</rdf:li></rdf:Bag></dc:subject><dc:title>x</dc:title>" in new
    assert xmp.read(new).stars == 2 and xmp.parse(new).keywords == ["joyq|quality|4"] * 2
    with pytest.raises(xmp.XmpError, match="not a number"):
        xmp.set_rating(head + b"<xmp:Rating/>" + tail, 2)


def test_minimal_sidecar_and_ms_photo_only():
    assert xmp.read(xmp.set_rating(None, 3)).stars == 3
    ms_only = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/" '
        b'MicrosoftPhoto:Rating="50"/></rdf:RDF></x:xmpmeta>'
    )
    r = xmp.read(ms_only)
    assert r.stars == 3 and r.from_ms_photo
    new = xmp.set_rating(ms_only, 4, keyword="joyq|quality|1")
    assert b'MicrosoftPhoto:Rating="75"' in new and xmp.read(new).stars == 4
    assert [xmp.stars_of_ms_photo(v) for v in (1, 25, 50, 75, 99, 0)] == [1, 2, 3, 4, 5, 0]


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="&lol2;"/></rdf:RDF></x:xmpmeta>"""


@pytest.mark.parametrize(
    "data, words",
    [
        (BOMB, "DTD"),
        (b"<x:xmpmeta " + b" " * (xmp.MAX_XMP_BYTES + 1), "MiB"),
        ((DATA / "captureone.xmp").read_text().encode("utf-16"), "UTF-8"),
        ((DATA / "captureone.xmp").read_bytes().replace(b"UTF-8", b"ISO-8859-1"), "ISO-8859-1"),
        ((DATA / "captureone.xmp").read_bytes().replace(b"2024-07", b"\xff\xfe24-07"), "UTF-8"),
        ((DATA / "captureone.xmp").read_bytes().replace(b'rdf:about=""', b'rdf:about="" rdf:about="x"'), "well-formed"),
        (
            (DATA / "captureone.xmp")
            .read_bytes()
            .replace(b"</xmp:Rating>", b"</xmp:Rating><xmp:Rating>2</xmp:Rating>"),
            "2 xmp:Rating",
        ),
        ((DATA / "captureone.xmp").read_bytes().replace(b">5<", b">five<"), "not a number"),
        ((DATA / "captureone.xmp").read_bytes().replace(b">5<", b">9<"), "outside"),
        (b"<html><body/></html>", "not XMP"),
        ((DATA / "lightroom.xmp").read_bytes()[:-40], "well-formed"),
    ],
)
def test_hostile_or_unreadable_xmp_is_refused_in_one_sentence(data, words):
    with pytest.raises(xmp.XmpError) as e:
        xmp.set_rating(data, 3, keyword="joyq|quality|1", where="IMG_9.xmp")
    msg = str(e.value)
    assert msg.startswith("IMG_9.xmp: ") and words in msg and msg.count(". ") == 0, msg


def test_embedded_ratings_in_jpeg_png_tiff_and_exif(tmp_path):
    im = Image.new("RGB", (8, 8), "red")
    packet = xmp.set_rating(None, 4)
    im.save(tmp_path / "a.jpg", xmp=packet)
    exif = Image.Exif()
    exif[0x4746] = 2
    im.save(tmp_path / "b.jpg", exif=exif)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode())
    im.save(tmp_path / "c.png", pnginfo=info)
    im.save(tmp_path / "d.tif", tiffinfo={700: packet})
    im.save(tmp_path / "e.jpg")
    (tmp_path / "f.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    got = {p.name: embedded_rating(p) for p in sorted(tmp_path.iterdir())}
    assert got["a.jpg"][0].stars == 4
    assert got["b.jpg"][0].stars == 2
    assert got["c.png"][0].stars == 4
    assert got["d.tif"][0].stars == 4
    assert got["e.jpg"] == (None, None)
    assert got["f.heic"][0] is None and "HEIF" in got["f.heic"][1]


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool (libimage-exiftool-perl) is not installed")
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_exiftool_reads_back_what_we_wrote(tmp_path, name):
    out = tmp_path / name
    out.write_bytes(xmp.set_rating((DATA / name).read_bytes(), 4, keyword="joyq|quality|6"))
    res = subprocess.run(
        ["exiftool", "-j", "-XMP:Rating", "-XMP:Subject", "-XMP:HierarchicalSubject", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    import json

    tags = json.loads(res.stdout)[0]
    assert tags["Rating"] == 4
    subj = tags["Subject"] if isinstance(tags["Subject"], list) else [tags["Subject"]]
    assert "joyq|quality|6" in subj
    assert "joyq|quality|6" in str(tags["HierarchicalSubject"])
    new = tmp_path / "new.xmp"
    new.write_bytes(xmp.set_rating(None, -1, keyword="joyq|quality|0"))
    tags = json.loads(
        subprocess.run(["exiftool", "-j", "-XMP:Rating", str(new)], capture_output=True, text=True).stdout
    )
    assert tags[0]["Rating"] == -1
