"""Tests for skycore_async.notifications: golden postbacks, hostile bodies and round trips."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skycore_async.errors import ProtocolError
from skycore_async.fields import canon
from skycore_async.notifications import (
    Notification,
    PostbackCode,
    decode_notifications,
    describe_postback_code,
    encode_legacy_batch,
    encode_notification,
    format_timestamp,
    parse_timestamp,
)

FIXTURES = Path(__file__).parent / "fixtures" / "postbacks"
DIALECTS = ("skycore", "hyphenated", "legacy")


def _tz(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


EDT, EST = _tz(-4), _tz(-5)


def _at(*parts: int, tz: timezone = EDT) -> datetime:
    year, month, day, hour, minute, second, micro = (*parts, 0, 0, 0, 0)[:7]
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


T1 = "TU1TXzU5Nzg3OQ=="

# Example name -> (its legacy fixture's notification ID, the fields every format decodes to).
EXAMPLES: dict[str, tuple[str, Notification]] = {
    "mms_mt_n101": ("1000", Notification(
        origin="MMS_MT", code="N101", sent_as="MMS", status="Message Sent", mms_id="39597",
        from_="60856", to="16501112222", tracking_id=T1, operator_id="0001570",
        timestamp=_at(2012, 6, 7, 7, 27, 29, tz=EST), client_reference="order-1234",
    )),
    "mms_mt_n102": ("1001", Notification(
        origin="MMS_MT", code="N102", sent_as="MMS", status="Message Sent/Delivered",
        mms_id="39597", to="16501112222", tracking_id=T1, operator_id="0001570",
        timestamp=_at(2012, 6, 7, 7, 27, 34, tz=EST), handset="motol7c",
        aggregator_id="11529-1339072054-0001",
    )),
    "mms_mt_e102": ("1002", Notification(
        origin="MMS_MT", code="E102", status="Message Sent/Rejected", mms_id="39597",
        from_="60856", to="16501113333", tracking_id="TU1TXzU5ODAwMQ==", operator_id="0001570",
        timestamp=_at(2014, 7, 23, 9, 38, 7, 123456), aggregator_id="11529-1406122687-0042",
        status_details="Recipient blocked by mobile operator",
    )),
    "mms_mt_e101": ("1003", Notification(
        origin="MMS_MT", code="E101", status="Message Failed", mms_id="39598", from_="60856",
        to="16501114444", tracking_id="TU1TXzU5ODAwMg==", operator_id="0001570",
        status_details="Error fetching dynamic content",
    )),
    "mms_mt_n101_xhtml": ("1004", Notification(
        origin="MMS_MT", code="N101", sent_as="SMS", status="Message Sent", mms_id="39597",
        from_="60856", to="16501115555", tracking_id="DrXAFP-4kq2", operator_id="0001890",
        timestamp=_at(2014, 7, 2, 14, 32, 23),
        status_details="Handset setting: mms with pass via xHTML",
    )),
    "mms_mt_n202_xhtml": ("1005", Notification(
        origin="MMS_MT", code="N202", sent_as="SMS", status="Message Sent/Delivered",
        to="16501115555", tracking_id="DrXAFP-4kq2", operator_id="0001890",
        timestamp=_at(2014, 7, 2, 14, 32, 41), aggregator_id="0A1B2C3D4E",
    )),
    "ddm_n501": ("1006", Notification(
        origin="MMS_MT", code="N501", sent_as="MMS", status="Message Sent", mms_id="39597",
        to="16501116666", tracking_id="DrXAFP-7ddm", operator_id="0001570",
        timestamp=_at(2014, 7, 2, 14, 30, 0),
    )),
    "ddm_e502": ("1007", Notification(
        origin="MMS_MT", code="E502", status="Message Sent/Expired", mms_id="39597",
        to="16501116666", tracking_id="DrXAFP-7ddm", operator_id="0001570",
        timestamp=_at(2014, 7, 2, 16, 30, 0), aggregator_id="11529-1404333000-0007",
    )),
    "sms_mt_n201": ("1008", Notification(
        origin="SMS_MT", code="N201", status="Message Sent", from_="60856", to="16501117777",
        tracking_id="U01TXzQ1Njk1", operator_id="0001570", timestamp=_at(2014, 7, 2, 14, 32, 23),
        extra={"FROM_MASK": "Skycore"},
    )),
    "sms_mt_n202": ("1009", Notification(
        origin="SMS_MT", code="N202", status="Message Sent/Delivered", from_="60856",
        to="16501117777", tracking_id="U01TXzQ1Njk1", operator_id="0001570",
        timestamp=_at(2014, 7, 2, 14, 32, 30), aggregator_id="7fa3c21e",
        status_details="?smpp?deliver_sm=4&",
    )),
    "sms_mt_e202": ("1010", Notification(
        origin="SMS_MT", code="E202", status="Message Sent/Failed", from_="60856",
        to="16501118888", tracking_id="U01TXzQ1NzAw", operator_id="0001570",
        timestamp=_at(2014, 7, 2, 14, 35, 2), aggregator_id="7fa3c31f",
        status_details="Absent subscriber",
    )),
    "savemms_n003": ("1011", Notification(origin="MMS_MT", code="N003", mms_id="35674")),
    "savemms_e002": ("1012", Notification(
        origin="MMS_MT", code="E002", mms_id="35675",
        extra={"AUDIONAME": "http://example.com/media/jingle.mp3?v=1&fmt=amr"},
    )),
    "savemms_e003": ("1013", Notification(
        origin="MMS_MT", code="E003", mms_id="35676", extra={"VIDEONAME": "promo-summer.mov"},
    )),
    "sms_mo_n211": ("1014", Notification(
        origin="SMS_MO", code="N211", from_="16501112222", to="60856",
        extra={"TEXT": "STOP please", "RECEIVED": "2014-07-02 14:32:23", "TRANSACTIONID": "88231"},
    )),
    "mms_mo_n401": ("1015", Notification(
        origin="MMS_MO", code="N401", from_="16501112222", to="60856", tracking_id="MMSMO_4411",
        operator_id="0001570", timestamp=_at(2014, 7, 2, 14, 40, 0),
        extra={
            "KEYWORD": "PHOTO",
            "SUBJECT": "My pic <3",
            "FILE": "https://mms.example.com/in/4411/1.jpg\nhttps://mms.example.com/in/4411/2.txt",
        },
    )),
    "sub_n301": ("1016", Notification(
        origin="SUB", code="N301", timestamp=_at(2014, 7, 2, 15, 0, 0),
        extra={
            "MOBILE": "16501112222", "CAMPAIGNID": "4512", "SHORTCODE": "60856",
            "CAMPAIGNTITLE": "Summer deals", "BRANDNAME": "Acme & Sons", "SOURCE": "API",
        },
    )),
    "sub_n302": ("1017", Notification(
        origin="SUB", code="N302", timestamp=_at(2014, 7, 9, 8, 15, 0),
        extra={
            "MOBILE": "16501112222", "CAMPAIGNID": "4512", "SHORTCODE": "60856",
            "CAMPAIGNTITLE": "Summer deals", "BRANDNAME": "Acme & Sons",
            "SOURCE": "IMPORTED AS UNSUBSCRIBED",
        },
    )),
    "sub_n301_short": ("1018", Notification(
        origin="SUB", code="N301",
        extra={"MOBILE": "16501119999", "CAMPAIGNID": "4512", "SUBID": "90210"},
    )),
    "email_sub_n303": ("1019", Notification(
        origin="EMAIL_SUB", code="N303",
        extra={"EMAIL": "jane@example.com", "CAMPAIGNID": "4513", "SUBID": "77"},
    )),
    "pass_n801": ("1020", Notification(
        origin="GENERATE_PASS", code="N801", timestamp=_at(2014, 7, 2, 16, 0, 0),
        extra={
            "REFERENCEDBY": "MMSID", "REFERENCEVALUE": "39597", "CUSTOMPASSID": "cp-2014-001",
            "PASSDATAID": "551", "SERIALNUMBER": "SN-0001",
        },
    )),
}  # fmt: skip
LEGACY_CREATED = _at(2013, 3, 4, 10, 11, 12, 345678, tz=EST)

# Example -> (is_final, is_delivered, delivered_as_sms, is_failure).
FLAGS: dict[str, tuple[bool, bool, bool, bool]] = {
    "mms_mt_n101": (False, False, False, False),
    "mms_mt_n102": (True, True, False, False),
    "mms_mt_e102": (True, False, False, True),
    "mms_mt_e101": (True, False, False, True),
    "mms_mt_n101_xhtml": (False, False, False, False),
    "mms_mt_n202_xhtml": (True, True, True, False),
    "ddm_n501": (False, False, False, False),
    "ddm_e502": (False, False, False, True),
    "sms_mt_n201": (False, False, False, False),
    "sms_mt_n202": (True, True, True, False),
    "sms_mt_e202": (True, False, False, True),
    "savemms_n003": (False, False, False, False),
    "savemms_e002": (True, False, False, True),
    "savemms_e003": (True, False, False, True),
    "sms_mo_n211": (False, False, False, False),
    "mms_mo_n401": (False, False, False, False),
    "sub_n301": (False, False, False, False),
    "sub_n302": (False, False, False, False),
    "sub_n301_short": (False, False, False, False),
    "email_sub_n303": (False, False, False, False),
    "pass_n801": (False, False, False, False),
}

EXTRA_FIXTURES = {
    "legacy_mms_n102.legacy.xml",
    "legacy_xhtml_batch.legacy.xml",
    "legacy_sms_n201.legacy.xml",
    "legacy_sms_n202_failed.legacy.xml",
    "sinch_n102_sent_as_sms.hyphenated.xml",
}


def _expected(example: str, dialect: str) -> Notification:
    legacy_id, expected = EXAMPLES[example]
    if dialect == "legacy":
        return attrs.evolve(expected, notification_id=legacy_id, created=LEGACY_CREATED)
    return expected


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _offsets(n: Notification) -> tuple[timedelta | None, timedelta | None]:
    return (
        n.timestamp.utcoffset() if n.timestamp else None,
        n.created.utcoffset() if n.created else None,
    )


def _one(body: bytes, content_type: str = "") -> Notification:
    notifications = decode_notifications(body, content_type)
    assert len(notifications) == 1
    return notifications[0]


# --------------------------------------------------------------------------- golden fixtures


def test_every_fixture_is_covered() -> None:
    """Every fixture file is used, and every example exists in all three formats."""
    golden = {f"{example}.{dialect}.xml" for example in EXAMPLES for dialect in DIALECTS}
    assert {path.name for path in FIXTURES.glob("*.xml")} == golden | EXTRA_FIXTURES


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_golden_example(example: str, dialect: str) -> None:
    """Every digest §5 example decodes to the same fields in all three formats."""
    body = _fixture(f"{example}.{dialect}.xml")
    got = _one(body, "text/xml")
    expected = _expected(example, dialect)
    assert got == expected
    assert _offsets(got) == _offsets(expected)
    assert got.raw == body.lstrip()


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_golden_flags(example: str) -> None:
    """is_final / is_delivered / delivered_as_sms / is_failure follow the §5.7 code table."""
    n = EXAMPLES[example][1]
    assert (n.is_final, n.is_delivered, n.delivered_as_sms, n.is_failure) == FLAGS[example]


def test_digest_legacy_example() -> None:
    """The §5.6 legacy example: STATUS attributes kept, TEXT as status, ID/CREATED read."""
    n = _one(_fixture("legacy_mms_n102.legacy.xml"))
    assert n == Notification(
        origin="MMS_MT",
        code="N102",
        status="Retrieved",
        status_attributes={
            "CELLY": "20",
            "PROVIDER": "1000",
            "TEXT": "Retrieved",
            "DESCRIPTION": "",
        },
        history_id="249687",
        mms_id="35674",
        to="16501234123",
        tracking_id="MMS_12346",
        scheduled_id="12346",
        operator_id="000189",
        handset="motol7c",
        notification_id="325",
        timestamp=_at(2011, 8, 2, 7, 20, 49),
        created=_at(2011, 8, 2, 7, 20, 45, 870623),
    )
    assert _offsets(n) == (timedelta(hours=-4), timedelta(hours=-4))
    assert (n.is_final, n.is_delivered, n.delivered_as_sms) == (True, True, False)
    assert n.dedupe_key() == "325"


def test_legacy_batch_of_three() -> None:
    """Three legacy notifications in one POSTBACK come back in order, each with its own raw XML."""
    start, link_sent, receipt = decode_notifications(_fixture("legacy_xhtml_batch.legacy.xml"))
    assert [n.notification_id for n in (start, link_sent, receipt)] == ["410", "411", "412"]
    assert [n.code for n in (start, link_sent, receipt)] == ["N101", "N102", "N202"]
    assert link_sent.created == _at(2012, 1, 17, 11, 2, 9, 500000, tz=EST)
    assert (link_sent.status, link_sent.status_attributes["CELLY"]) == ("Sent", "10")
    assert receipt.origin == "SMS_MT"
    assert receipt.tracking_id == link_sent.sms_id == "SMS_45700"
    assert receipt.status is None
    assert receipt.status_attributes == {"PROTOCOLE": "3", "STATUS": "1"}
    assert b'"411"' in link_sent.raw
    assert b'"410"' not in link_sent.raw


def test_legacy_xhtml_flow_flags() -> None:
    """A legacy N102 with SMSID is an interim step; the N202 after it is the delivery."""
    _, link_sent, receipt = decode_notifications(_fixture("legacy_xhtml_batch.legacy.xml"))
    assert (link_sent.is_final, link_sent.is_delivered, link_sent.is_failure) == (False,) * 3
    assert (receipt.is_final, receipt.is_delivered, receipt.delivered_as_sms) == (True,) * 3


def test_legacy_single_lowercase_root() -> None:
    """A lower-case <notification id= created=> root with a lower-case body decodes too."""
    n = _one(_fixture("legacy_sms_n201.legacy.xml"))
    assert n == Notification(
        origin="SMS_MT",
        code="N201",
        history_id="260001",
        to="16501234123",
        tracking_id="SMS_45695",
        notification_id="512",
        timestamp=_at(2012, 3, 1, 8, 59, 59, tz=EST),
        created=_at(2012, 3, 1, 9, 0, 0, 1, tz=EST),
    )


def test_legacy_n202_failed_receipt() -> None:
    """A legacy N202 whose protocole=3 status=2 says 'failed' is a final failure."""
    n = _one(_fixture("legacy_sms_n202_failed.legacy.xml"))
    assert n.status_attributes == {"PROTOCOLE": "3", "STATUS": "2"}
    assert (n.is_final, n.is_failure, n.is_delivered, n.delivered_as_sms) == (
        True,
        True,
        False,
        False,
    )


def test_sinch_n102_sent_as_sms() -> None:
    """Sinch reports the xHTML receipt as N102 with sent-as SMS: delivered as SMS."""
    n = _one(_fixture("sinch_n102_sent_as_sms.hyphenated.xml"))
    assert (n.sent_as, n.operator_id, n.from_) == ("SMS", "31003", "60856")
    assert n.timestamp == datetime(2016, 5, 12, 8, 20, 30, tzinfo=UTC)
    assert _offsets(n) == (timedelta(hours=2), None)
    assert (n.is_final, n.is_delivered, n.delivered_as_sms, n.is_failure) == (
        True,
        True,
        True,
        False,
    )


def test_n102_with_failure_status_is_not_delivered() -> None:
    """Older docs allowed 'Message Sent/Rejected' under N102: final, failed, not delivered."""
    n = Notification(origin="MMS_MT", code="N102", status="Message Sent/Rejected")
    assert (n.is_final, n.is_failure, n.is_delivered) == (True, True, False)


# --------------------------------------------------------------------------- leniency


def test_tags_are_case_and_hyphen_insensitive_in_any_order() -> None:
    """Mixed-case, hyphenated and underscored tags in any order map to the same fields."""
    body = (
        b"<PostBack><Time_Stamp>2014-07-02T14:32:23-04</Time_Stamp><Tracking-ID>t1</Tracking-ID>"
        b"<code>n102</code><Sent_As>MMS</Sent_As><sPiD>0001570</sPiD><Origin>mms_mt</Origin>"
        b"<client-reference>ref-9</client-reference><Status-Details>ok</Status-Details></PostBack>"
    )
    assert _one(body) == Notification(
        origin="MMS_MT",
        code="N102",
        sent_as="MMS",
        tracking_id="t1",
        operator_id="0001570",
        client_reference="ref-9",
        status_details="ok",
        timestamp=_at(2014, 7, 2, 14, 32, 23),
    )


def test_unknown_fields_are_kept() -> None:
    """Fields this library does not know land in extra under their canonical name."""
    body = b"<postback><code>N101</code><origin>MMS_MT</origin><new-field>x</new-field></postback>"
    assert _one(body).extra == {"NEWFIELD": "x"}


def test_unparsable_timestamp_is_kept_in_extra() -> None:
    """A TIMESTAMP that is not a date leaves timestamp None and keeps the text."""
    n = _one(
        b"<POSTBACK><ORIGIN>SUB</ORIGIN><CODE>N301</CODE><TIMESTAMP>soon</TIMESTAMP></POSTBACK>"
    )
    assert (n.timestamp, n.extra) == (None, {"TIMESTAMP": "soon"})


def test_missing_origin_is_empty() -> None:
    """ORIGIN is documented as always present, but its absence is not fatal."""
    assert _one(b"<POSTBACK><CODE>N003</CODE><MMSID>1</MMSID></POSTBACK>").origin == ""


def test_pass_postback_with_code_and_statuscode_keeps_statuscode() -> None:
    """When both CODE and STATUSCODE arrive, CODE wins and STATUSCODE stays in extra."""
    body = (
        b"<POSTBACK><ORIGIN>GENERATE_PASS</ORIGIN>"
        b"<CODE>N801</CODE><STATUSCODE>N802</STATUSCODE></POSTBACK>"
    )
    n = _one(body)
    assert (n.code, n.extra) == ("N801", {"STATUSCODE": "N802"})


def test_namespace_prefixed_tags() -> None:
    """A namespace prefix on tags is ignored."""
    body = b'<p:POSTBACK xmlns:p="urn:x"><p:ORIGIN>SUB</p:ORIGIN><p:CODE>N301</p:CODE></p:POSTBACK>'
    assert _one(body).code == "N301"


# --------------------------------------------------------------------------- body forms

XML = _fixture("mms_mt_n102.skycore.xml")


@pytest.mark.parametrize("field", ["xml", "XML", "Xml"])
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded; charset=UTF-8", ""])
def test_form_encoded_body(field: str, content_type: str) -> None:
    """The XML inside the xml/XML field of a form body, found by content type or by prefix."""
    body = f"{field}={quote_plus(XML)}&other=1".encode("ascii")
    assert _one(body, content_type) == EXAMPLES["mms_mt_n102"][1]


def test_form_field_in_second_position() -> None:
    """The xml field need not come first when the content type says form."""
    body = f"from=me&xml={quote(XML)}".encode("ascii")
    assert _one(body, "application/x-www-form-urlencoded") == EXAMPLES["mms_mt_n102"][1]


def test_form_keeps_declared_encoding() -> None:
    """Percent-encoded bytes reach the parser unchanged, so a latin-1 declaration works."""
    xml = "<?xml version='1.0' encoding='ISO-8859-1'?>"
    xml += "<POSTBACK><CODE>N211</CODE><TEXT>café</TEXT></POSTBACK>"
    body = b"xml=" + quote_plus(xml.encode("latin-1")).encode("ascii")
    assert _one(body).extra == {"TEXT": "café"}


def test_form_content_type_over_raw_xml() -> None:
    """A raw XML body labelled as a form (Net::HTTP's default) is read as XML."""
    assert _one(XML, "application/x-www-form-urlencoded") == EXAMPLES["mms_mt_n102"][1]


def test_unencoded_xml_field() -> None:
    """An xml= body whose value was never URL-encoded is taken verbatim."""
    assert _one(b"xml=" + XML) == EXAMPLES["mms_mt_n102"][1]


def test_form_without_xml_field() -> None:
    """A form body with no xml field is a ProtocolError."""
    with pytest.raises(ProtocolError, match="no 'xml' field"):
        decode_notifications(b"foo=bar&baz=1", "application/x-www-form-urlencoded")


def test_str_body_is_accepted() -> None:
    """A str body (not the documented bytes) is encoded as UTF-8 rather than rejected."""
    assert _one(XML.decode("utf-8")) == EXAMPLES["mms_mt_n102"][1]  # type: ignore[arg-type]


def test_utf16_body() -> None:
    """A UTF-16 document with a BOM decodes."""
    body = XML.decode("utf-8").replace("version='1.0'", "version='1.0' encoding='UTF-16'")
    assert _one(body.encode("utf-16")) == EXAMPLES["mms_mt_n102"][1]


# --------------------------------------------------------------------------- hostile input

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<POSTBACK><ORIGIN>MMS_MT</ORIGIN><CODE>N101</CODE><TO>&lol3;</TO></POSTBACK>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<POSTBACK><ORIGIN>MMS_MT</ORIGIN><CODE>N101</CODE><TO>&xxe;</TO></POSTBACK>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE POSTBACK SYSTEM "http://attacker.example/p.dtd">
<POSTBACK><ORIGIN>MMS_MT</ORIGIN><CODE>N101</CODE></POSTBACK>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_dtd_and_entities_are_refused(body: bytes) -> None:
    """Billion laughs, external entities and external DTDs raise ProtocolError."""
    with pytest.raises(ProtocolError, match="DTD"):
        decode_notifications(body)


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_form_encoded_dtd_is_refused(body: bytes) -> None:
    """A DTD hidden inside a form field is refused as well."""
    with pytest.raises(ProtocolError, match="DTD"):
        decode_notifications(b"xml=" + quote_plus(body).encode("ascii"))


def test_utf16_doctype_is_refused() -> None:
    """A DOCTYPE the byte scan cannot see (UTF-16) is still refused by the parser."""
    body = EXTERNAL_DTD.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"')
    with pytest.raises(ProtocolError):
        decode_notifications(body.decode("ascii").encode("utf-16"))


def test_oversized_body() -> None:
    """Bodies over max_bytes are refused before parsing."""
    padding = b"<X>" + b"a" * (1 << 20) + b"</X>"
    with pytest.raises(ProtocolError, match="larger than"):
        decode_notifications(XML.replace(b"</POSTBACK>", padding + b"</POSTBACK>"))
    with pytest.raises(ProtocolError, match="larger than 100 bytes"):
        decode_notifications(XML, max_bytes=100)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"  \r\n ",
        b"<POSTBACK>",
        b"not xml at all",
        b"<POSTBACK><CODE>N101</POSTBACK>",
        b"<POSTBACK></POSTBACK>",
        b"<POSTBACK><ORIGIN>MMS_MT</ORIGIN><CODE>  </CODE></POSTBACK>",
        b"<POSTBACK><NOTIFICATION ID='1'><ORIGIN>MMS_MT</ORIGIN></NOTIFICATION></POSTBACK>",
        b"<RESPONSE><STATUS>Success</STATUS></RESPONSE>",
        b"<html><body>502 Bad Gateway</body></html>",
        b"\xff\xfe\x00garbage",
        b"<POSTBACK><CODE>N101</CODE></POSTBACK><POSTBACK/>",
        b'<?xml version="1.0" encoding="klingon"?><POSTBACK><CODE>N1</CODE></POSTBACK>',
        b'--boundary\r\nContent-Disposition: form-data; name="xml"\r\n\r\n<POSTBACK/>',
    ],
)
def test_undecodable_bodies(body: bytes) -> None:
    """Empty, truncated, non-XML, wrong-root and code-less bodies raise ProtocolError."""
    with pytest.raises(ProtocolError):
        decode_notifications(body)


def test_non_bytes_body() -> None:
    """A body of the wrong type is a ProtocolError, not a TypeError."""
    with pytest.raises(ProtocolError):
        decode_notifications(12345)  # type: ignore[arg-type]


def test_deep_nesting() -> None:
    """Pathologically nested XML raises ProtocolError rather than RecursionError."""
    body = b"<POSTBACK><CODE>N1</CODE>" + b"<A>" * 5000 + b"x" + b"</A>" * 5000 + b"</POSTBACK>"
    with pytest.raises(ProtocolError, match="nested"):
        decode_notifications(body)


def _only_protocol_errors(body: bytes, content_type: str = "") -> None:
    try:
        notifications = decode_notifications(body, content_type)
    except ProtocolError:
        return
    assert all(isinstance(n, Notification) and n.code for n in notifications)


CONTENT_TYPES = st.sampled_from(
    ["", "text/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), CONTENT_TYPES)
def test_arbitrary_bytes_raise_only_protocol_error(body: bytes, content_type: str) -> None:
    """Any byte string either decodes or raises ProtocolError, never anything else."""
    _only_protocol_errors(body, content_type)


XML_TOKENS = [
    *"<>/=\"' &;#!?-_xX09", "POSTBACK", "NOTIFICATION", "CODE", "ORIGIN", "BODY", "STATUS",
    "TIMESTAMP", "ID=", "<![CDATA[", "]]>", "<!DOCTYPE", "<!ENTITY", "&#0;", "&#x10FFFF;", "&amp;",
    "xml=", "<?xml version='1.0'?>", "N102", "é", "\x00",
]  # fmt: skip
XMLISH = st.lists(st.sampled_from(XML_TOKENS), max_size=40).map("".join)


@settings(max_examples=500, deadline=None)
@given(XMLISH, CONTENT_TYPES)
def test_xmlish_text_raises_only_protocol_error(text: str, content_type: str) -> None:
    """XML-looking garbage either decodes or raises ProtocolError."""
    _only_protocol_errors(text.encode("utf-8"), content_type)


ALL_FIXTURES = sorted(path.name for path in FIXTURES.glob("*.xml"))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_FIXTURES), st.data())
def test_mutated_fixtures_raise_only_protocol_error(name: str, data: st.DataObject) -> None:
    """Fixtures with bytes cut, replaced or inserted either decode or raise ProtocolError."""
    body = bytearray(_fixture(name))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body)))
        cut = data.draw(st.integers(0, 3))
        body[at : at + cut] = data.draw(st.binary(max_size=3))
    _only_protocol_errors(bytes(body))


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2011-08-02 07:20:45.870623-04", _at(2011, 8, 2, 7, 20, 45, 870623)),
        ("2012-06-07T07:27:29-05:00", _at(2012, 6, 7, 7, 27, 29, tz=EST)),
        ("2014-07-23T09:38:07.123456-04:00", _at(2014, 7, 23, 9, 38, 7, 123456)),
        ("2014-07-02T14:32:23-04", _at(2014, 7, 2, 14, 32, 23)),
        ("2014-07-02T14:32:23Z", _at(2014, 7, 2, 14, 32, 23, tz=UTC)),
        ("2014-07-02T14:32:23+0000", _at(2014, 7, 2, 14, 32, 23, tz=UTC)),
        (
            "2014-07-02T14:32:23+0530",
            _at(2014, 7, 2, 14, 32, 23, tz=timezone(timedelta(minutes=330))),
        ),
        ("2014-07-02 14:32:23", _at(2014, 7, 2, 14, 32, 23, tz=UTC)),
        ("  2014-07-02T14:32:23.5-04 ", _at(2014, 7, 2, 14, 32, 23, 500000)),
        ("2014-07-02T14:32:23.123456789-04:00", _at(2014, 7, 2, 14, 32, 23, 123456)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    """Every documented format parses to the right instant with the right offset."""
    got = parse_timestamp(text)
    assert got == expected
    assert got is not None
    assert got.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    ["", "soon", "2014-13-02T14:32:23", "2014-07-02T25:00:00", "2014-07-02T14:32:23+24:00",
     "2014-07-02T14:32:23+05:75", "2014-07-02", "١٢٣٤-07-02T14:32:23", "2014-07-02T14:32:23 EST"],
)  # fmt: skip
def test_parse_timestamp_rejects(text: str) -> None:
    """Unparsable timestamps give None."""
    assert parse_timestamp(text) is None


@given(st.text(max_size=60))
def test_parse_timestamp_never_raises(text: str) -> None:
    """parse_timestamp returns a tz-aware datetime or None for any text."""
    got = parse_timestamp(text)
    assert got is None or got.utcoffset() is not None


def test_format_timestamp() -> None:
    """Timestamps are written like Skycore's: ISO with a colon offset, micros only if set."""
    assert format_timestamp(_at(2012, 6, 7, 7, 27, 29, tz=EST)) == "2012-06-07T07:27:29-05:00"
    assert (
        format_timestamp(_at(2014, 7, 23, 9, 38, 7, 123456)) == "2014-07-23T09:38:07.123456-04:00"
    )
    assert format_timestamp(datetime(2014, 7, 2, 14, 32)) == "2014-07-02T14:32:00+00:00"
    odd = timezone(timedelta(seconds=30))
    assert format_timestamp(_at(2014, 7, 2, 14, 32, 30, tz=odd)) == "2014-07-02T14:32:00+00:00"


# --------------------------------------------------------------------------- codes and keys


def test_postback_codes_have_meanings() -> None:
    """Every PostbackCode member has a meaning; unknown codes describe as ''."""
    assert all(code.meaning for code in PostbackCode)
    assert describe_postback_code(" e101 ") == "Could not send MMS"
    assert describe_postback_code("E108") == ""
    assert PostbackCode("N102") == "N102"


def test_notification_meaning() -> None:
    """Notification.meaning describes its code."""
    assert EXAMPLES["sms_mt_n202"][1].meaning.startswith("SMS delivered")


def test_dedupe_key_uses_tracking_code_and_utc_time() -> None:
    """Without an id, the key is tracking id, code and the UTC instant (offset-independent)."""
    n = EXAMPLES["mms_mt_n102"][1]
    assert n.dedupe_key() == f"{T1}|N102|2012-06-07T12:27:34+00:00"
    same_instant = attrs.evolve(n, timestamp=n.timestamp.astimezone(UTC) if n.timestamp else None)
    assert same_instant.dedupe_key() == n.dedupe_key()


def test_dedupe_key_falls_back_to_content_hash() -> None:
    """Without id or tracking id, equal notifications share a hashed key, others do not."""
    n = EXAMPLES["savemms_n003"][1]
    decoded = _one(_fixture("savemms_n003.hyphenated.xml"))
    assert n.dedupe_key().startswith("sha256:")
    assert decoded.dedupe_key() == n.dedupe_key()
    assert attrs.evolve(n, mms_id="35675").dedupe_key() != n.dedupe_key()


def test_notification_value_semantics() -> None:
    """Notifications are frozen and hashable; raw is left out of eq and repr; code is normalized."""
    n = Notification(origin=" mms_mt ", code="n101\n", raw=b"<x/>", extra={"A": "1"})
    assert (n.origin, n.code) == ("MMS_MT", "N101")
    assert n == attrs.evolve(n, raw=b"other")
    assert "raw" not in repr(n)
    assert hash(n) == hash(attrs.evolve(n, raw=b""))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        n.code = "N102"  # type: ignore[misc]


def test_naive_timestamps_are_taken_as_utc() -> None:
    """A naive timestamp given to the constructor is made UTC-aware."""
    n = Notification(origin="SUB", code="N301", timestamp=datetime(2014, 1, 1))
    assert n.timestamp == datetime(2014, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_round_trip(name: str, dialect: Any) -> None:
    """Every fixture survives decode -> encode -> decode in every dialect."""
    for n in decode_notifications(_fixture(name)):
        assert decode_notifications(encode_notification(n, dialect)) == [n]


def test_encode_skycore_shape() -> None:
    """The flat dialect writes upper-case tags, SPID for the carrier and a Skycore timestamp."""
    xml = encode_notification(EXAMPLES["mms_mt_n101"][1], "skycore").decode("utf-8")
    assert "<POSTBACK><ORIGIN>MMS_MT</ORIGIN><CODE>N101</CODE><SENTAS>MMS</SENTAS>" in xml
    assert "<SPID>0001570</SPID>" in xml
    assert "<TIMESTAMP>2012-06-07T07:27:29-05:00</TIMESTAMP>" in xml


def test_encode_hyphenated_shape() -> None:
    """The hyphenated dialect writes lower-case Sinch names."""
    n = attrs.evolve(EXAMPLES["savemms_e002"][1], status_details="x", tracking_id="t")
    xml = encode_notification(n, "hyphenated").decode("utf-8")
    for tag in ("<postback>", "<mms-id>", "<audio-name>", "<status-details>", "<tracking-id>"):
        assert tag in xml


def test_encode_legacy_shape() -> None:
    """The legacy dialect writes ID/CREATED attributes, ORIGIN, CODE and a BODY."""
    n = _one(_fixture("legacy_mms_n102.legacy.xml"))
    xml = encode_notification(n, "legacy").decode("utf-8")
    assert '<NOTIFICATION ID="325" CREATED="2011-08-02T07:20:45.870623-04:00">' in xml
    assert "<ORIGIN>MMS_MT</ORIGIN><CODE>N102</CODE><BODY>" in xml
    assert '<STATUS CELLY="20" PROVIDER="1000" TEXT="Retrieved" DESCRIPTION="">' in xml


def test_encode_pass_uses_statuscode() -> None:
    """Pass postbacks carry their code as STATUSCODE, as Skycore sends them."""
    xml = encode_notification(EXAMPLES["pass_n801"][1], "skycore")
    assert b"<STATUSCODE>N801</STATUSCODE>" in xml
    assert b"<CODE>" not in xml


def test_encode_legacy_batch_round_trip() -> None:
    """encode_legacy_batch wraps several notifications in one POSTBACK that decodes back."""
    batch = decode_notifications(_fixture("legacy_xhtml_batch.legacy.xml"))
    assert decode_notifications(encode_legacy_batch(batch)) == batch
    with pytest.raises(ValueError, match="at least one"):
        encode_legacy_batch([])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"code": " "}, "needs a code"),
        ({"extra": {"TO": "1"}}, "typed fields"),
        ({"extra": {"new-field": "1"}}, "canonical"),
        ({"extra": {"SPID": "1"}}, "canonical"),
        ({"status_attributes": {"a b": "1"}}, "canonical"),
        ({"to": "a\x00b"}, "XML 1.0"),
        ({"extra": {"NOTE": "\ud800"}}, "XML 1.0"),
    ],
)
def test_encode_rejects_unrepresentable(changes: dict[str, Any], message: str) -> None:
    """encode_notification raises ValueError for input the decoder could not give back."""
    n = attrs.evolve(EXAMPLES["mms_mt_n101"][1], **changes)
    with pytest.raises(ValueError, match=message):
        encode_notification(n, "skycore")


def test_encode_unknown_dialect() -> None:
    """An unknown dialect is a ValueError."""
    with pytest.raises(ValueError, match="dialect"):
        encode_notification(EXAMPLES["mms_mt_n101"][1], "sinch")  # type: ignore[arg-type]


XML_WHITESPACE = " \t\r\n"
XML_CHAR = st.characters(
    codec="utf-8", min_codepoint=0x20, exclude_characters="\ufffe\uffff"
) | st.sampled_from("\t\n\r")
TEXT = st.text(XML_CHAR, max_size=24).map(lambda s: s.strip(XML_WHITESPACE))
OPTIONAL_TEXT = st.none() | TEXT
TYPED = {
    "ORIGIN", "CODE", "SENTAS", "STATUS", "MMSID", "FROM", "TO", "TRACKINGID", "OPERATORID",
    "HANDSET", "AGGREGATORID", "STATUSDETAILS", "CLIENT_REFERENCE", "SCHEDULEDID", "HISTORYID",
    "SMSID", "TIMESTAMP", "BODY", "NOTIFICATION", "POSTBACK",
}  # fmt: skip
EXTRA_KEY = st.from_regex(re.compile(r"[A-Z][A-Z0-9]{0,8}"), fullmatch=True).filter(
    lambda key: key not in TYPED and (canon(key) == key or key == "CAMPAIGNID")
)
MOMENT = st.none() | st.datetimes(
    timezones=st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )
)
STATUS_KEYS = st.sampled_from(["CELLY", "PROVIDER", "TEXT", "DESCRIPTION", "PROTOCOLE", "STATUS"])
CODE = st.text(XML_CHAR, min_size=1, max_size=8).filter(
    lambda s: s.strip(XML_WHITESPACE).upper() != ""
)


@st.composite
def _status(draw: st.DrawFn) -> tuple[str | None, dict[str, str]]:
    """A status and STATUS attributes as a decoder could have produced them."""
    attributes = draw(st.dictionaries(STATUS_KEYS, TEXT, max_size=4))
    if not attributes:
        return draw(OPTIONAL_TEXT), attributes
    text = draw(st.none() | TEXT.filter(bool))
    return (attributes.get("TEXT") if text is None else text), attributes


@st.composite
def notifications(draw: st.DrawFn) -> Notification:
    """Arbitrary notifications whose every text XML 1.0 can carry."""
    status, status_attributes = draw(_status())
    names = ["sent_as", "tracking_id", "to", "from_", "mms_id", "scheduled_id", "operator_id",
             "handset", "aggregator_id", "status_details", "client_reference", "notification_id",
             "history_id", "sms_id"]  # fmt: skip
    optional: dict[str, Any] = {name: draw(OPTIONAL_TEXT) for name in names}
    return Notification(
        origin=draw(st.sampled_from(["MMS_MT", "SMS_MT", "GENERATE_PASS", ""]) | TEXT),
        code=draw(CODE),
        status=status,
        status_attributes=status_attributes,
        timestamp=draw(MOMENT),
        created=draw(MOMENT),
        extra=draw(st.dictionaries(EXTRA_KEY, TEXT, max_size=4)),
        **optional,
    )


@settings(max_examples=300, deadline=None)
@given(notifications(), st.sampled_from(DIALECTS))
def test_arbitrary_notifications_round_trip(n: Notification, dialect: Any) -> None:
    """decode(encode(n)) == n for arbitrary text values in every dialect."""
    [back] = decode_notifications(encode_notification(n, dialect))
    assert back == n
    assert _offsets(back) == _offsets(n)


@settings(max_examples=100, deadline=None)
@given(st.lists(notifications(), min_size=1, max_size=4))
def test_arbitrary_legacy_batches_round_trip(batch: list[Notification]) -> None:
    """A legacy batch of arbitrary notifications decodes back to the same list."""
    assert decode_notifications(encode_legacy_batch(batch)) == batch
