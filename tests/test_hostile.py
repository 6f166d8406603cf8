"""Hostile input for every parser: replies, requests, postbacks, recipient files, E106 text.

Invariants: only the documented typed errors escape (ProtocolError for XML, RowError rows or
a ValueError for an unusable file); memory stays bounded on huge input; DTDs, entities and
external references are refused without being expanded or fetched; and a recipient file
never loses a row: every non-blank line comes out once, as a Recipient or a RowError, in
order, with its line number.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skycore_async import BulkMessage, SkycoreClient
from skycore_async.errors import (
    MAX_INTERVAL_SECONDS,
    MIN_INTERVAL_SECONDS,
    ProtocolError,
    parse_interval_seconds,
)
from skycore_async.notifications import Notification, decode_notifications, encode_notification
from skycore_async.protocol import ApiResponse, decode_request, decode_response, encode_response
from skycore_async.receiver import make_postback_app
from skycore_async.recipients import MAX_LINE_BYTES, Recipient, RowError, read_csv, read_jsonl
from skycore_async.testing import Emulator

# Modest example counts: the whole file runs in seconds (HYPOTHESIS_PROFILE=thorough for more).
settings.register_profile("hostile", max_examples=120, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
HOSTILE = settings.get_profile(
    "thorough" if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else "hostile"
)
FILES = settings(HOSTILE, suppress_health_check=[HealthCheck.function_scoped_fixture])

VALID_REPLY = encode_response(
    [("STATUS", "Success"), ("MMSID", "35674"), ("TRACKINGID", "TU1TXzU5Nzg3OQ=="),
     ("TO", "16501234123"), ("STATUSDETAILS", "MMS request accepted")]
)  # fmt: skip
VALID_FAILURE = encode_response([("STATUS", "Failure"), ("ERRORCODE", "E110"), ("ERRORINFO", "x")])
VALID_POSTBACK = encode_notification(
    Notification(origin="MMS_MT", code="N102", tracking_id="TU1TXzU5Nzg3OQ==", to="16501234123")
)

# --------------------------------------------------------------------------- XML attacks

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ROOT><STATUS>&lol9;</STATUS><CODE>&lol9;</CODE><ACTION>&lol9;</ACTION></ROOT>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE ROOT [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ROOT><STATUS>&xxe;</STATUS><CODE>&xxe;</CODE><ACTION>&xxe;</ACTION></ROOT>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE ROOT [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<ROOT><STATUS>Success</STATUS><CODE>N102</CODE></ROOT>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ROOT SYSTEM "file:///etc/passwd">
<ROOT><STATUS>Success</STATUS><CODE>N102</CODE></ROOT>"""
UNDECLARED_ENTITY = b"<ROOT><STATUS>&xxe;</STATUS><CODE>&xxe;</CODE></ROOT>"
ATTACKS = {
    "billion laughs": BILLION_LAUGHS,
    "external entity": EXTERNAL_ENTITY,
    "parameter entity": PARAMETER_ENTITY,
    "external DTD": EXTERNAL_DTD,
    "undeclared entity": UNDECLARED_ENTITY,
    # The byte scan for "<!DOCTYPE" cannot see these; the parser itself must refuse them.
    "UTF-16 external DTD": EXTERNAL_DTD.replace(b'"1.0"', b'"1.0" encoding="UTF-16"')
    .decode()
    .encode("utf-16"),
    "UTF-16 billion laughs": BILLION_LAUGHS.replace(b'"1.0"', b'"1.0" encoding="UTF-16"')
    .decode()
    .encode("utf-16"),
}


def as_root(document: bytes, root: bytes) -> bytes:
    """``document`` with its root element renamed (RESPONSE, REQUEST, POSTBACK)."""
    if document.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = document.decode("utf-16").replace("ROOT", root.decode())
        return text.encode("utf-16")
    return document.replace(b"ROOT", root)


PARSERS: dict[str, tuple[bytes, Callable[[bytes], object]]] = {
    "decode_response": (b"RESPONSE", decode_response),
    "decode_request": (b"REQUEST", lambda body: decode_request(body, content_type="text/xml")),
    "decode_notifications": (b"POSTBACK", decode_notifications),
}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("attack", ATTACKS)
def test_dtds_and_entities_are_refused_without_expansion(attack: str, parser: str) -> None:
    """Every XML parser refuses DTDs and entities with a ProtocolError, fast and small."""
    root, parse = PARSERS[parser]
    body = as_root(ATTACKS[attack], root)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ProtocolError) as raised:
            parse(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0, "the entities were expanded"
    assert peak < 4 * len(body) + 256 * 1024, f"{peak} bytes for a {len(body)}-byte document"
    assert "root:" not in str(raised.value), "a file's content leaked into the error"


@pytest.mark.parametrize("parser", PARSERS)
def test_xinclude_is_inert(parser: str) -> None:
    """No parser processes XInclude: the element stays an empty field, the file is never read.

    A document whose required content would come from the include is refused, as it lacks it.
    """
    root, parse = PARSERS[parser]
    include = b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>'
    only_include = b"<" + root + b">" + include + b"</" + root + b">"
    if parser == "decode_request":
        request, _ = decode_request(only_include)
        assert request.action == ""  # the emulator answers E101
    else:
        with pytest.raises(ProtocolError):
            parse(only_include)
    fields = (
        b"<STATUS>Success</STATUS><CODE>N102</CODE><ACTION>getMmsIds</ACTION><API_KEY>k</API_KEY>"
    )
    result = parse(b"<" + root + b">" + fields + include + b"</" + root + b">")
    assert "root:" not in repr(result)


def deeply_nested(levels: int, root: bytes) -> bytes:
    leaves = b"<STATUS>Success</STATUS><CODE>N102</CODE><ACTION>getMmsIds</ACTION>"
    return b"<" + root + b">" + leaves + b"<a>" * levels + b"x" + b"</a>" * levels + b"</" + root + b">"  # fmt: skip


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("levels", [100, 5000, 100_000])
def test_deep_nesting_is_a_protocol_error(parser: str, levels: int) -> None:
    """Thousands of nested elements: a ProtocolError, not a RecursionError."""
    root, parse = PARSERS[parser]
    with pytest.raises(ProtocolError):
        parse(deeply_nested(levels, root))


# --------------------------------------------------------------------------- replies


def mutate(data: bytes, draw: Any) -> bytes:
    """Apply a few random byte-level edits: delete, insert, replace, duplicate, truncate."""
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        at = draw(st.integers(0, size))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
        if kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 20)) :]
        elif kind == "insert":
            piece = draw(st.sampled_from([b"<", b">", b"&", b"&amp;", b"<!DOCTYPE x>", b"\x00",
                                          b"\xff", b"<X>", b"</X>", b"]]>", b"<![CDATA[", b'"',
                                          b"<!--", b"-->", b"<?pi?>", b"\r\n"]))  # fmt: skip
            data = data[:at] + piece + data[at:]
        elif kind == "replace" and at < size:
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "duplicate":
            data = data[:at] + data[at // 2 : at] + data[at:]
        else:
            data = data[:at]
    return data


@st.composite
def mutated(draw: Any, valid: bytes) -> bytes:
    return mutate(valid, draw)


def check_reply(reply: ApiResponse) -> None:
    assert isinstance(reply.status, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in reply.fields.items())
    assert reply.status or "ERRORCODE" in reply.fields


@HOSTILE
@given(body=st.binary(max_size=2000), status=st.integers(0, 999))
def test_decode_response_on_any_bytes(body: bytes, status: int) -> None:
    """Arbitrary bytes: an ApiResponse with a status or an error code, or a ProtocolError."""
    with contextlib.suppress(ProtocolError):
        check_reply(decode_response(body, status=status))


@HOSTILE
@given(text=st.text(max_size=500))
def test_decode_response_on_any_text(text: str) -> None:
    """Arbitrary Unicode text (inside a RESPONSE element or bare): the same."""
    for body in (text.encode(), f"<RESPONSE>{text}</RESPONSE>".encode()):
        with contextlib.suppress(ProtocolError):
            check_reply(decode_response(body))


@HOSTILE
@given(body=st.one_of(mutated(VALID_REPLY), mutated(VALID_FAILURE)))
def test_decode_response_on_mutated_replies(body: bytes) -> None:
    """Valid replies with random edits: a reply or a ProtocolError, and fast and full agree."""
    with contextlib.suppress(ProtocolError):
        check_reply(decode_response(body))


@HOSTILE
@given(body=st.binary(max_size=1000), content_type=st.text(max_size=60))
def test_decode_request_on_any_bytes(body: bytes, content_type: str) -> None:
    """The emulator's request decoder: a request or a ProtocolError."""
    with contextlib.suppress(ProtocolError):
        decode_request(body, content_type=content_type)


# --------------------------------------------------------------------------- postbacks

CONTENT_TYPES = st.one_of(
    st.sampled_from(["", "text/xml", "application/xml; charset=utf-8",
                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                     "text/html", "application/json"]),
    st.text(max_size=60),
)  # fmt: skip


def check_notifications(result: list[Notification]) -> None:
    assert result, "a decoded postback holds at least one notification"
    assert all(isinstance(n, Notification) and n.code for n in result)


@HOSTILE
@given(body=st.binary(max_size=2000), content_type=CONTENT_TYPES)
def test_postback_parser_on_any_body(body: bytes, content_type: str) -> None:
    """Arbitrary bodies and content types: notifications or a ProtocolError."""
    for candidate in (body, b"xml=" + body):
        with contextlib.suppress(ProtocolError):
            check_notifications(decode_notifications(candidate, content_type))


@HOSTILE
@given(body=mutated(VALID_POSTBACK), content_type=CONTENT_TYPES)
def test_postback_parser_on_mutated_postbacks(body: bytes, content_type: str) -> None:
    """A valid postback with random edits: notifications or a ProtocolError."""
    with contextlib.suppress(ProtocolError):
        check_notifications(decode_notifications(body, content_type))


async def test_receiver_answers_hostile_bodies_and_keeps_serving(tmp_path: Path) -> None:
    """Hostile postbacks get 400/413 (never a 500 or a crash); a valid one still gets 200."""
    app = make_postback_app(out=tmp_path / "n.jsonl", max_body=64 * 1024)
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        hostile = [*(as_root(a, b"POSTBACK") for a in ATTACKS.values()),
                   deeply_nested(100_000, b"POSTBACK")[: 60 * 1024], deeply_nested(10_000, b"POSTBACK"),
                   b"\xff\xfe\x00", b"xml=%ZZ", b"", b"<POSTBACK>" * 20_000]  # fmt: skip
        for body in hostile:
            response = await http.post(
                "/postbacks", data=body, headers={"Content-Type": "text/xml"}
            )
            assert response.status in (400, 413), (response.status, body[:80])
        response = await http.post("/postbacks", data=VALID_POSTBACK)
        assert response.status == 200
    assert (tmp_path / "n.jsonl").read_bytes().count(b"\n") == 1


# --------------------------------------------------------------------------- E106 text


@HOSTILE
@given(text=st.text(max_size=2000))
def test_interval_text_any(text: str) -> None:
    """Any text: None or a number within the clamp bounds; never an exception."""
    value = parse_interval_seconds(text)
    assert value is None or MIN_INTERVAL_SECONDS <= value <= MAX_INTERVAL_SECONDS


@HOSTILE
@given(
    seconds=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    noise=st.text(max_size=40),
    unit=st.sampled_from([("seconds", 1.0), ("sec", 1.0), ("s", 1.0), ("ms", 0.001),
                          ("milliseconds", 0.001), ("minutes", 60.0), ("min", 60.0)]),
)  # fmt: skip
def test_interval_text_with_numbers(seconds: float, noise: str, unit: tuple[str, float]) -> None:
    """ "every X unit" after arbitrary noise reads X (clamped), whatever precedes it."""
    text = f"{noise} You can call API every {seconds:.3f} {unit[0]}"
    value = parse_interval_seconds(text)
    expected = min(
        max(float(f"{seconds:.3f}") * unit[1], MIN_INTERVAL_SECONDS), MAX_INTERVAL_SECONDS
    )
    if not any(word in noise.lower() for word in ("every", "least", "interval", "wait")):
        assert value == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    ["every " + "9" * 400 + " seconds", "every ٣ seconds", "every \u00a0 seconds", "every -5 s",
     "every 0 seconds", "x" * 10_000_000, "every .5,5,5 sec", "\x00every\x002\x00sec"],
)  # fmt: skip
def test_interval_text_edge_cases(text: str) -> None:
    """Huge, empty, negative, non-ASCII digits, 10 MB: bounded and in range."""
    value = parse_interval_seconds(text)
    assert value is None or MIN_INTERVAL_SECONDS <= value <= MAX_INTERVAL_SECONDS


# --------------------------------------------------------------------------- recipient files

LINE_PIECES = st.sampled_from(
    [b"16501234567", b"+1 (650) 123-4568", b",", b'"', b'""', b"\x00", b"\xff", b"\xe9",
     b"\xc3\xa9", b"\r", b" ", b"\t", b"{", b"}", b"[", b"]", b":", b'"to"', b"null", b"1",
     b"\xef\xbb\xbf", b"\xe2\x80\xa8", b"\x1c", b"data"]
)  # fmt: skip
HOSTILE_LINE = st.lists(st.one_of(LINE_PIECES, st.binary(max_size=6)), max_size=8).map(b"".join)


WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)


def physical_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(line number, content) per line, as a reader must see them (\\n ends a line)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if lines:
        lines[0] = lines[0].removeprefix(codecs.BOM_UTF8)
    return [(n, line.rstrip(b"\r\n")) for n, line in enumerate(lines, start=1)]


def is_blank(line: bytes) -> bool:
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def check_rows(items: list[Recipient | RowError], data: bytes, first_row_line: int) -> None:
    """One item per non-blank line from ``first_row_line``, in order, with its line number."""
    expected = [(n, line) for n, line in physical_lines(data) if n >= first_row_line]
    expected = [(n, line) for n, line in expected if not is_blank(line)]
    assert len(items) == len(expected), "a row was lost or invented"
    for item, (number, _line) in zip(items, expected, strict=True):
        assert isinstance(item, Recipient | RowError)
        if isinstance(item, RowError):
            assert item.line == number


@FILES
@given(lines=st.lists(HOSTILE_LINE, max_size=20), crlf=st.booleans())
def test_csv_reader_never_loses_a_row(tmp_path: Path, lines: list[bytes], crlf: bool) -> None:
    """Any bytes after a valid header: one Recipient or RowError per non-blank line."""
    ending = b"\r\n" if crlf else b"\n"
    data = ending.join([b"to,first_name", *lines]) + ending
    path = tmp_path / "r.csv"
    path.write_bytes(data)
    check_rows(list(read_csv(path)), data, first_row_line=2)


@FILES
@given(lines=st.lists(HOSTILE_LINE, max_size=20))
def test_jsonl_reader_never_loses_a_row(tmp_path: Path, lines: list[bytes]) -> None:
    """Any bytes: one Recipient or RowError per non-blank line."""
    data = b"\n".join(lines) + b"\n"
    if data.startswith(WIDE_BOMS):
        return  # a UTF-16/32 file is refused as a whole (test below)
    path = tmp_path / "r.jsonl"
    path.write_bytes(data)
    check_rows(list(read_jsonl(path)), data, first_row_line=1)


JSON_KEYS = st.sampled_from(
    ["to", "phone", "data", "custom_text", "custom_subject", "client_reference", "x"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(JSON_KEYS, children, max_size=4)
    ),
    max_leaves=12,
)


@FILES
@given(value=JSON_VALUES)
def test_jsonl_reader_on_any_json_value(tmp_path: Path, value: Any) -> None:
    """Any JSON value on a line: a Recipient (object with a number, or a bare number) or RowError."""
    path = tmp_path / "r.jsonl"
    try:
        path.write_bytes(orjson.dumps(value) + b"\n")
    except orjson.JSONEncodeError:
        return  # not representable as JSON (e.g. a huge int)
    (item,) = list(read_jsonl(path))
    assert isinstance(item, Recipient | RowError)
    if isinstance(item, Recipient):
        assert isinstance(item.to, str)
        assert item.to
        assert item.data is None or all(isinstance(v, str) for v in item.data.values())


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def rows_of(path: Path) -> list[Recipient | RowError]:
    return list(read_jsonl(path) if path.suffix == ".jsonl" else read_csv(path))


def test_bad_encodings_become_row_errors_with_their_line(tmp_path: Path) -> None:
    """Latin-1 and invalid UTF-8 rows: RowErrors with their line; the rows around them read."""
    data = "to,name\n16501230001,Zoë\n".encode() + b"16501230002,Zo\xeb\n16501230003,\xff\xfe\n16501230004,ok\n"  # fmt: skip
    items = rows_of(write(tmp_path / "r.csv", data))
    assert [type(i).__name__ for i in items] == ["Recipient", "RowError", "RowError", "Recipient"]
    assert [i.line for i in items if isinstance(i, RowError)] == [3, 4]
    assert items[0] == Recipient("16501230001", data={"name": "Zoë"})


def test_missing_columns_blank_lines_and_crlf(tmp_path: Path) -> None:
    """A short row is a RowError; blank lines are skipped; CRLF leaves no stray CR."""
    data = (
        b"phone,name,client_reference\r\n\r\n16501230001,Ann,r1\r\n,Bob\r\n   \r\n16501230002\r\n"
    )
    items = rows_of(write(tmp_path / "r.csv", data))
    assert items[0] == Recipient("16501230001", data={"name": "Ann"}, client_reference="r1")
    assert isinstance(items[1], RowError)
    assert items[1].line == 4
    assert items[2] == Recipient("16501230002")
    assert len(items) == 3


def test_csv_without_a_number_column_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no number column"):
        rows_of(write(tmp_path / "r.csv", b"name,email\nAnn,a@x\n"))
    with pytest.raises(ValueError, match="empty"):
        rows_of(write(tmp_path / "r.csv", b"\n\n  \n"))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_utf8_bom_is_ignored(tmp_path: Path, suffix: str) -> None:
    """Excel's UTF-8 BOM does not hide the header or the first row."""
    body = b"to\n16501230001\n" if suffix == ".csv" else b'{"to": "16501230001"}\n'
    (item,) = rows_of(write(tmp_path / f"r{suffix}", codecs.BOM_UTF8 + body))
    assert item == Recipient("16501230001")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_utf16_and_utf32_files_are_refused_whole(
    tmp_path: Path, suffix: str, encoding: str
) -> None:
    """A UTF-16/32 file ("Unicode text" from Excel) is a ValueError naming the encoding."""
    text = "to\n16501230001\n" if suffix == ".csv" else '{"to": "16501230001"}\n'
    bom = {"utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    path = write(tmp_path / f"r{suffix}", bom + text.encode(encoding))
    with pytest.raises(ValueError, match=r"UTF-(16|32)"):
        rows_of(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_10_mb_line_is_one_row_error_in_bounded_memory(tmp_path: Path, suffix: str) -> None:
    """A 10 MB line is never held whole: one RowError, and the next line still reads."""
    path = tmp_path / f"big{suffix}"
    with open(path, "wb") as handle:
        handle.write(b"to,name\n" if suffix == ".csv" else b"")
        handle.write(b"16501230001," + b"x" * 10_000_000 + b"\n")
        handle.write(b'"16501230002"\n' if suffix == ".jsonl" else b"16501230002,ok\n")
        handle.write(b"y" * 5_000_000)  # and a last line without a newline
    tracemalloc.start()
    try:
        items = rows_of(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, (
        f"peak {peak} bytes (lines are read at most {MAX_LINE_BYTES} at a time)"
    )
    first_row = 2 if suffix == ".csv" else 1
    assert [type(i).__name__ for i in items] == ["RowError", "Recipient", "RowError"]
    assert [i.line for i in items if isinstance(i, RowError)] == [first_row, first_row + 2]
    assert items[1] == Recipient("16501230002", data={"name": "ok"} if suffix == ".csv" else None)


def test_nul_bytes_and_duplicates_are_rows(tmp_path: Path) -> None:
    """NULs stay in the row (validation rejects the number later); duplicates are both read."""
    items = rows_of(write(tmp_path / "r.csv", b"to\n1650\x001230001\n16501230002\n16501230002\n"))
    assert [i.to for i in items] == ["1650\x001230001", "16501230002", "16501230002"]


def test_a_quoted_field_with_a_line_break_is_not_silently_cut(tmp_path: Path) -> None:
    """An unclosed quote is a RowError; the data is not sent cut off at the line break."""
    data = b'to,first_name\n16501230001,"Ann\nSmith"\n16501230002,"Bob, Jr"\n'
    items = rows_of(write(tmp_path / "r.csv", data))
    assert isinstance(items[0], RowError)
    assert items[0].line == 2
    assert "quoted field" in items[0].reason
    assert items[1] == Recipient('Smith"')  # read on its own; fails number validation later
    assert items[2] == Recipient("16501230002", data={"first_name": "Bob, Jr"})


def test_cr_only_line_endings_are_a_value_error(tmp_path: Path) -> None:
    """Classic-Mac CR endings make the whole file one line: a ValueError, not a csv.Error."""
    with pytest.raises(ValueError, match="CSV header"):
        rows_of(write(tmp_path / "r.csv", b"to,name\r16501230001,Ann\r"))


@pytest.mark.parametrize(
    "line",
    [b"[1, 2]", b"null", b"true", b"1.5", b"{}", b'{"to": null}', b'{"to": {"a": 1}}',
     b'{"to": "1650", "data": [1]}', b'{"to": "1650", "custom_text": {"x": "y"}}',
     b'{"to": "1650", "custom_subject": {"a": 1}}', b"[" * 100_000, b'{"a":' * 10_000,
     b"123456789012345678901234567890", b'{"to": "1650"'],
)  # fmt: skip
def test_jsonl_non_objects_and_deep_nesting_are_row_errors(tmp_path: Path, line: bytes) -> None:
    """Non-objects, wrong types, deep nesting, huge integers, torn lines: one RowError."""
    (item,) = rows_of(write(tmp_path / "r.jsonl", line + b"\n"))
    assert isinstance(item, RowError)
    assert item.line == 1


# --------------------------------------------------------------------------- end to end

HOSTILE_CSV = b"".join(
    [codecs.BOM_UTF8, b"to,first_name,client_reference\r\n",
     b"16501230001,Ann,r1\r\n",                 # 0 sent
     b"16501230002,Zo\xeb,r2\r\n",              # 1 latin-1: failed ROW
     b"\r\n",                                   # blank: no row
     b"16501230003," + b"x" * 100_000 + b"\n",  # 2 too long: failed ROW
     b"1650\x001230004,nul\n",                  # 3 NUL in the number: failed E110
     b'16501230005,"Multi\n',                   # 4 unclosed quote: failed ROW
     b'line",x\n',                              # 5 the continuation: failed E110
     b"16501230001,again\n",                    # 6 duplicate: skipped
     b",no number\n",                           # 7 missing number: failed ROW
     b"16501230006,\xff\xfe\n",                 # 8 invalid UTF-8: failed ROW
     b"16501230007,Bob,r7\n",                   # 9 sent
     b"16501230008,x," + b"r" * 100 + b"\n",    # 10 client_reference too long: failed
     b"16501230009,last"]                       # 11 sent (no final newline)
)  # fmt: skip


async def test_bulk_over_a_hostile_file_gives_one_outcome_per_row(tmp_path: Path) -> None:
    """Every row gets exactly one outcome (failed/skipped with a code, or sent); no crash."""
    path = write(tmp_path / "hostile.csv", HOSTILE_CSV)
    message = BulkMessage.saved_mms(mms_id=35674, from_="60856")
    async with Emulator() as emulator:
        emulator.add_template(35674)
        async with SkycoreClient(api_key="test-key", base_url=emulator.url) as client:
            run = client.send_bulk(message, read_csv(path))
            async with run:
                outcomes = [o for batch in [b async for b in run] for o in batch.outcomes]
        accepted = sorted(send.to for send in emulator.accepted)
    by_index = {o.index: o for o in outcomes}
    assert len(outcomes) == len(by_index) == 12
    statuses = [by_index[i].status for i in range(12)]
    assert statuses == ["sent", "failed", "failed", "failed", "failed", "failed",
                        "skipped", "failed", "failed", "sent", "failed", "sent"]  # fmt: skip
    assert all(o.error_code for o in outcomes if o.status != "sent")
    assert [by_index[i].error_code for i in (1, 2, 4, 7, 8)] == ["ROW"] * 5
    assert "line 3" in (by_index[1].error_info or "")
    assert accepted == ["16501230001", "16501230007", "16501230009"]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skycore_async", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "content", [b"to,name\r16501230001,Ann\r", "to\n1650\n".encode("utf-16"), b"name\nAnn\n"]
)
async def test_cli_refuses_unreadable_files_with_a_message(tmp_path: Path, content: bytes) -> None:
    """CR-only, UTF-16 and number-less files: exit status 2 and one 'error:' line, no traceback."""
    path = write(tmp_path / "r.csv", content)
    async with Emulator() as emulator:
        emulator.add_template(35674)
        env = {**os.environ, "SKYCORE_API_KEY": "test-key", "SKYCORE_BASE_URL": emulator.url}
        args = ["bulk", "--mms-id", "35674", "--from", "60856", "--recipients", str(path),
                "--out", str(tmp_path / "out.jsonl")]  # fmt: skip
        result = await asyncio.to_thread(run_cli, args, env)
        assert emulator.requests_received == 0
    assert result.returncode == 2, result.stderr
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr
