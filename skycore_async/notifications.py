"""Skycore postback notifications: decode every documented shape, encode them for the emulator.

Pure: no I/O, no asyncio. :func:`decode_notifications` turns one postback HTTP body into a list
of :class:`Notification`; it accepts

* the flat ``<POSTBACK>`` notification (``ORIGIN``, ``CODE``, ``SENTAS``, ``STATUS``, ...);
* the legacy ``<NOTIFICATION ID=".." CREATED="..">`` with ``ORIGIN``, ``CODE`` and ``BODY``,
  as the root or several of them wrapped in one ``<POSTBACK>`` (the 2013 per-minute batches);
* the hyphenated lower-case ``<postback>`` (``sent-as``, ``mms-id``, ``tracking-id``, ...);

carried as a raw XML body or in the ``xml``/``XML`` field of a form-encoded body. Tag and
attribute names are matched case-, hyphen- and underscore-insensitively (:func:`fields.canon`),
element order and wrapper elements (``BODY``, ``CONTENT``) do not matter, and unknown fields are
kept in :attr:`Notification.extra`. Anything undecodable raises :class:`errors.ProtocolError`.

Leaf texts are stripped of surrounding XML whitespace (space, tab, CR, LF); repeated elements
(an MMS MO's ``CONTENT/FILE`` list) are joined with ``"\\n"``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal
from urllib.parse import parse_qsl
from xml.parsers import expat

import attrs
import xmltodict

from .errors import ProtocolError
from .fields import canon

__all__ = [
    "EncodeDialect",
    "Notification",
    "PostbackCode",
    "decode_notifications",
    "describe_postback_code",
    "encode_legacy_batch",
    "encode_notification",
    "format_timestamp",
    "parse_timestamp",
]

EncodeDialect = Literal["skycore", "hyphenated", "legacy"]

_XML_SPACE: Final = " \t\r\n"
_MAX_DEPTH: Final = 16


class PostbackCode(enum.StrEnum):
    """The codes a postback's ``CODE`` (or a pass postback's ``STATUSCODE``) carries.

    This is a separate namespace from the reply E-codes in :mod:`errors`: ``E101`` means
    "could not send MMS" here but "'action' required" in an API reply.
    """

    E001 = "E001"
    E002 = "E002"
    E003 = "E003"
    E011 = "E011"
    E012 = "E012"
    E013 = "E013"
    E101 = "E101"
    E102 = "E102"
    E201 = "E201"
    E202 = "E202"
    E501 = "E501"
    E502 = "E502"
    E999 = "E999"
    N003 = "N003"
    N013 = "N013"
    N101 = "N101"
    N102 = "N102"
    N201 = "N201"
    N202 = "N202"
    N211 = "N211"
    N301 = "N301"
    N302 = "N302"
    N303 = "N303"
    N304 = "N304"
    N401 = "N401"
    N501 = "N501"
    N502 = "N502"
    N801 = "N801"
    N802 = "N802"
    N803 = "N803"
    N811 = "N811"

    @property
    def meaning(self) -> str:
        """The documented meaning of the code."""
        return _MEANINGS[self]


_MEANINGS: Final[dict[str, str]] = {
    "E001": "Mobile video encoding failed (older number for E011)",
    "E002": "MMS audio encoding failed; the MMS id is unusable",
    "E003": "MMS video encoding failed; the MMS id is unusable",
    "E011": "Mobile video encoding failed",
    "E012": "Audio encoding failed (sendMMS)",
    "E013": "Video encoding failed (sendMMS)",
    "E101": "Could not send MMS",
    "E102": "MMS delivery not successful",
    "E201": "Could not send SMS",
    "E202": "SMS (or MMS-as-SMS link) delivery not successful",
    "E501": "DDM could not be sent; the content still goes out after the timeout",
    "E502": "DDM delivery failed; the content still goes out after the timeout",
    "E999": "Post-send queue processing error",
    "N003": "Content stored and encoded; the template is ready",
    "N013": "Content stored and encoded; sending triggered",
    "N101": "MMS sending started",
    "N102": "MMS delivery status changed (delivery receipt received)",
    "N201": "SMS sent (submitted to the carrier)",
    "N202": "SMS delivered (also the receipt of an MMS delivered as an SMS link)",
    "N211": "SMS MO received",
    "N301": "Number subscribed",
    "N302": "Number unsubscribed",
    "N303": "E-mail subscribed",
    "N304": "E-mail unsubscribed",
    "N401": "MMS MO received",
    "N501": "DDM sending started",
    "N502": "DDM delivery status changed",
    "N801": "Pass generated",
    "N802": "Pass generation failed",
    "N803": "Pass limit reached",
    "N811": "No credits to generate the pass",
}


def describe_postback_code(code: str) -> str:
    """The documented meaning of a postback code, or ``""`` for an unknown code."""
    return _MEANINGS.get(code.strip().upper(), "")


# Codes after which no further notification arrives for the message (N102 is special-cased).
_FINAL_CODES: Final = frozenset(
    {"N102", "N202", "E001", "E002", "E003", "E011", "E012", "E013"}
    | {"E101", "E102", "E201", "E202", "E999"}
)
_FAILED_STATUS: Final = re.compile(r"expired|rejected|failed|not\s*supported", re.IGNORECASE)

# --------------------------------------------------------------------------- timestamps

_TIMESTAMP: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII | re.IGNORECASE,
)


def parse_timestamp(text: str) -> datetime | None:
    """Parse any documented postback timestamp into a timezone-aware datetime.

    Accepts ``2011-08-02 07:20:45.870623-04``, ``2012-06-07T07:27:29-05:00``,
    ``2014-07-23T09:38:07.123456-04:00``, ``2014-07-02T14:32:23-04``, a ``Z`` or ``+0000``
    suffix, and no offset at all, which is taken as UTC (no source says otherwise).
    Returns None for anything unparsable; never raises.
    """
    if not isinstance(text, str):
        return None
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        date = datetime(int(year), int(month), int(day), int(hour), int(minute))
        return date.replace(second=int(second or "0"), microsecond=micro, tzinfo=_zone(offset))
    except ValueError:
        return None


def _zone(offset: str | None) -> timezone:
    if offset is None or offset.upper() == "Z":
        return UTC
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or "0")
    if minutes > 59:
        raise ValueError(offset)
    sign = -1 if offset[0] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def format_timestamp(moment: datetime) -> str:
    """A timestamp as Skycore writes it: ``2012-06-07T07:27:29-05:00`` (``.ffffff`` if any).

    Naive datetimes are taken as UTC; offsets that are not whole minutes are converted to UTC.
    """
    offset = moment.utcoffset()
    if offset is None:
        moment = moment.replace(tzinfo=UTC)
    elif offset % timedelta(minutes=1):
        moment = moment.astimezone(UTC)
    return moment.isoformat()


# --------------------------------------------------------------------------- the value class


def _normalize_code(value: str) -> str:
    return value.strip(_XML_SPACE).upper()


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value


def _str_map(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@attrs.frozen
class Notification:
    """One postback notification, whatever format it arrived in.

    ``origin`` and ``code`` are stripped and upper-cased (``origin`` is ``""`` when the
    postback had none); every other field is None when absent. ``status_attributes`` holds
    the attributes of a legacy ``<STATUS CELLY=.. PROVIDER=.. TEXT=.. DESCRIPTION=..>`` or
    ``<STATUS protocole=.. status=..>`` element (canonical upper-case names); ``status`` is
    then the element text or else its ``TEXT`` attribute. ``notification_id`` and ``created``
    come from the legacy ``ID``/``CREATED`` attributes. ``extra`` keeps every other leaf field
    (canonical name to text), including a ``TIMESTAMP``/``CREATED`` that could not be parsed.
    ``raw`` is the XML of this notification; it takes no part in equality or repr.

    Frozen and slotted; the two mappings are copied on construction and left out of the
    hash (equal notifications still hash equal).
    """

    origin: str = attrs.field(converter=_normalize_code)
    code: str = attrs.field(converter=_normalize_code)
    sent_as: str | None = None
    status: str | None = None
    status_attributes: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map, hash=False)
    tracking_id: str | None = None
    to: str | None = None
    from_: str | None = None
    mms_id: str | None = None
    scheduled_id: str | None = None
    operator_id: str | None = None
    handset: str | None = None
    aggregator_id: str | None = None
    status_details: str | None = None
    client_reference: str | None = None
    notification_id: str | None = None
    history_id: str | None = None
    sms_id: str | None = None
    timestamp: datetime | None = attrs.field(default=None, converter=_aware)
    created: datetime | None = attrs.field(default=None, converter=_aware)
    extra: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map, hash=False)
    raw: bytes = attrs.field(default=b"", eq=False, repr=False)

    @property
    def meaning(self) -> str:
        """The documented meaning of ``code`` (``""`` when unknown)."""
        return describe_postback_code(self.code)

    @property
    def is_final(self) -> bool:
        """No further notification will follow for this message.

        A legacy N102 that carries an ``SMSID`` only reports the SMS link as sent: the
        N202 with the SMS delivery receipt follows, so it is not final.
        """
        if self.code == "N102":
            return self.sms_id is None
        return self.code in _FINAL_CODES

    @property
    def is_delivered(self) -> bool:
        """The message reached the handset, as MMS or as an SMS with a link.

        N202, or a final N102 whose status does not say expired/rejected/failed/not
        supported (older docs allowed those texts under N102). A legacy N202 whose
        ``protocole``/``status`` attributes report a failure is not delivered.
        """
        if self.code == "N202":
            return not _sms_receipt_failed(self.status_attributes)
        failed = self.status is not None and _FAILED_STATUS.search(self.status) is not None
        return self.code == "N102" and self.is_final and not failed

    @property
    def delivered_as_sms(self) -> bool:
        """Delivered as an SMS: N202, or N102 with ``SENTAS`` SMS (the hyphenated dialect)."""
        sms = self.code == "N202" or (self.sent_as or "").strip().upper() == "SMS"
        return sms and self.is_delivered

    @property
    def is_failure(self) -> bool:
        """An E-code, or a final N102/N202 that reports a failed delivery."""
        if self.code.startswith("E"):
            return True
        return self.code in {"N102", "N202"} and self.is_final and not self.is_delivered

    def dedupe_key(self) -> str:
        """A key that is equal for redeliveries of the same notification.

        The legacy notification id when there is one, else ``tracking_id|code|timestamp``
        (timestamp in UTC ISO form), else a hash of all fields (``raw`` excluded, so equal
        notifications always share a key).
        """
        if self.notification_id:
            return self.notification_id
        if self.tracking_id:
            when = _utc_iso(self.timestamp) if self.timestamp else ""
            return f"{self.tracking_id}|{self.code}|{when}"
        fields = attrs.asdict(self, filter=lambda a, _: a.name != "raw", value_serializer=_plain)
        blob = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def _plain(_instance: object, _attribute: object, value: Any) -> Any:
    return _utc_iso(value) if isinstance(value, datetime) else value


def _utc_iso(moment: datetime) -> str:
    try:
        return moment.astimezone(UTC).isoformat()
    except OverflowError:
        return moment.isoformat()


def _sms_receipt_failed(attributes: Mapping[str, str]) -> bool:
    """Decode a legacy N202 ``<STATUS protocole=.. status=..>`` with the §5.8 protocol table."""
    protocol = attributes.get("PROTOCOLE") or attributes.get("PROTOCOL") or ""
    status = attributes.get("STATUS") or ""
    if not (protocol.isdecimal() and status.isdecimal()):
        return False
    code = int(status)
    failed = {
        "1": True,  # internal: every status is an error
        "2": code > 5,  # aggregator: 0-5 sent/processing/queued/buffered/delivered
        "3": bool(code & (2 | 16)),  # SMSC bitmask: 2 failed, 16 rejected
        "4": code != 0,  # IPX: 0 success
    }
    return failed.get(str(int(protocol)), False)


# --------------------------------------------------------------------------- decoding

# Canonical tag -> Notification attribute, in the order the flat format writes them.
_TEXT_FIELDS: Final[dict[str, str]] = {
    "SENTAS": "sent_as",
    "STATUS": "status",
    "MMSID": "mms_id",
    "FROM": "from_",
    "TO": "to",
    "TRACKINGID": "tracking_id",
    "OPERATORID": "operator_id",
    "HANDSET": "handset",
    "AGGREGATORID": "aggregator_id",
    "STATUSDETAILS": "status_details",
    "CLIENT_REFERENCE": "client_reference",
    "SCHEDULEDID": "scheduled_id",
    "HISTORYID": "history_id",
    "SMSID": "sms_id",
}


def _name(tag: str) -> str:
    """Canonical name of a postback tag or attribute (namespace prefix dropped)."""
    local = tag.rpartition(":")[2]
    # canon() maps CAMPAIGNID to the request field TOCAMPAIGN; in a subscription postback
    # it is the campaign the number joined, so keep its own name.
    if local.upper().replace("-", "").replace("_", "") == "CAMPAIGNID":
        return "CAMPAIGNID"
    return canon(local)


def decode_notifications(
    body: bytes, content_type: str = "", *, max_bytes: int = 1 << 20
) -> list[Notification]:
    """Decode one postback HTTP body into its notifications (one, or several for a batch).

    ``body`` is raw XML (any content type) or a form-encoded body with the XML in field
    ``xml``/``XML`` (detected by ``content_type`` or by the body starting with ``xml=``).
    Raises ProtocolError for bodies over ``max_bytes``, DTDs or entity declarations,
    malformed XML, a root other than POSTBACK/NOTIFICATION, or a notification without
    ``CODE``/``STATUSCODE``.
    """
    data = _as_bytes(body)
    if len(data) > max_bytes:
        raise ProtocolError(f"postback body is larger than {max_bytes} bytes", body=data)
    xml = _xml_payload(data, content_type)
    if _DTD.search(xml):
        raise ProtocolError("postback XML declares a DTD or an entity; refused", body=xml)
    root_tag, root = _parse_root(xml)
    elements = _notification_elements(root_tag, root, xml)
    if len(elements) == 1:
        return [_build(elements[0][1], xml)]
    return [_build(element, _reserialize(tag, element, xml)) for tag, element in elements]


def _as_bytes(body: object) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    raise ProtocolError(f"postback body must be bytes, not {type(body).__name__}")


_BOMS: Final = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def _xml_payload(data: bytes, content_type: str) -> bytes:
    """The XML document inside the body: the body itself or its ``xml`` form field."""
    body = data.lstrip()
    if not body:
        raise ProtocolError("empty postback body")
    if body[:4].lower() == b"xml=":
        return _form_xml(body)
    media_type = str(content_type).partition(";")[0].strip().lower()
    # A form content type over a raw XML body is what Net::HTTP-style senders produce.
    if media_type == "application/x-www-form-urlencoded" and not body.startswith((b"<", *_BOMS)):
        return _form_xml(body)
    return body


def _form_xml(body: bytes) -> bytes:
    if body[:4].lower() == b"xml=" and body[4:5] == b"<":
        return body[4:]  # sent without URL-encoding: take it verbatim
    try:
        # latin-1 maps every byte to one character, so the XML bytes come back unchanged.
        pairs = parse_qsl(
            body.decode("latin-1"), keep_blank_values=True, encoding="latin-1", max_num_fields=1000
        )
    except ValueError as exc:
        raise ProtocolError(f"undecodable form-encoded postback: {exc}", body=body) from None
    for key, value in pairs:
        if key.strip().lower() == "xml":
            return value.encode("latin-1").lstrip()
    raise ProtocolError("form-encoded postback has no 'xml' field", body=body)


_DTD: Final = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _refuse_doctype(*_args: object) -> None:
    raise ValueError("DTDs are not allowed in postbacks")


class _GuardedExpat:
    """Stands in for the expat module so that every parser refuses a DOCTYPE.

    The byte scan in decode_notifications misses DTDs in UTF-16 documents; this does not.
    """

    @staticmethod
    def ParserCreate(*args: Any) -> Any:
        parser = expat.ParserCreate(*args)
        parser.StartDoctypeDeclHandler = _refuse_doctype
        return parser


def _parse_root(xml: bytes) -> tuple[str, Any]:
    try:
        document = xmltodict.parse(xml, expat=_GuardedExpat, strip_whitespace=False)
    except (expat.ExpatError, ValueError, LookupError) as exc:
        raise ProtocolError(f"postback body is not well-formed XML: {exc}", body=xml) from None
    if not isinstance(document, dict) or len(document) != 1:
        raise ProtocolError("postback XML has no single root element", body=xml)
    tag, root = next(iter(document.items()))
    return str(tag), root


def _notification_elements(tag: str, root: Any, xml: bytes) -> list[tuple[str, Any]]:
    """The elements that each hold one notification."""
    name = _name(tag)
    if name == "NOTIFICATION":
        return [(tag, root)]
    if name != "POSTBACK":
        raise ProtocolError(f"postback root is <{tag}>, not POSTBACK or NOTIFICATION", body=xml)
    wrapped = [
        (key, item)
        for key, value in (root.items() if isinstance(root, dict) else ())
        if not key.startswith(("@", "#")) and _name(key) == "NOTIFICATION"
        for item in _items(value)
    ]
    return wrapped or [(tag, root)]


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _reserialize(tag: str, element: Any, xml: bytes) -> bytes:
    """The XML of one notification out of a batch (whole body if that fails)."""
    try:
        return str(xmltodict.unparse({tag: element}, full_document=False)).encode("utf-8")
    except (ValueError, UnicodeError):
        return xml


@attrs.define
class _Parts:
    leaves: dict[str, list[str]] = attrs.Factory(dict)
    status_attributes: dict[str, str] = attrs.Factory(dict)


def _collect(element: Any, parts: _Parts, depth: int = 0) -> None:
    """Gather every leaf below ``element``; wrappers such as BODY and CONTENT are transparent."""
    if depth > _MAX_DEPTH:
        raise ProtocolError("postback XML is nested too deeply")
    if not isinstance(element, dict):
        return
    for key, value in element.items():
        if key.startswith(("@", "#")):
            continue
        name = _name(key)
        for item in _items(value):
            if isinstance(item, dict) and any(not k.startswith(("@", "#")) for k in item):
                _collect(item, parts, depth + 1)
            else:
                _add_leaf(name, item, parts)


def _add_leaf(name: str, item: Any, parts: _Parts) -> None:
    attributes = _attributes(item)
    text = item.get("#text") if isinstance(item, dict) else item
    if name == "STATUS" and attributes:
        parts.status_attributes.update(attributes)
        if text is None:
            return  # <STATUS TEXT=".."/>: the status comes from the attribute
    text = (text or "").strip(_XML_SPACE)
    if name == "BODY" and not text:
        return  # an empty legacy BODY wrapper
    parts.leaves.setdefault(name, []).append(text)


def _attributes(element: Any) -> dict[str, str]:
    if not isinstance(element, dict):
        return {}
    return {
        _name(key[1:]): str(value).strip(_XML_SPACE)
        for key, value in element.items()
        if key.startswith("@")
    }


def _build(element: Any, raw: bytes) -> Notification:
    """One Notification from one notification element."""
    parts = _Parts()
    _collect(element, parts)
    leaves = {name: "\n".join(texts) for name, texts in parts.leaves.items()}
    code_tag = "CODE" if "CODE" in parts.leaves else "STATUSCODE"
    code = parts.leaves.get(code_tag, [""])[0]
    if not code:
        raise ProtocolError("postback notification has no CODE (or STATUSCODE)", body=raw)
    del leaves[code_tag]
    origin = parts.leaves.get("ORIGIN", [""])[0]
    leaves.pop("ORIGIN", None)
    kwargs: dict[str, Any] = {
        attr: leaves.pop(tag) for tag, attr in _TEXT_FIELDS.items() if tag in leaves
    }
    kwargs.setdefault("status", parts.status_attributes.get("TEXT"))
    kwargs["timestamp"] = _parse_time(leaves.pop("TIMESTAMP", None), leaves, "TIMESTAMP")
    attributes = _attributes(element)
    kwargs["created"] = _parse_time(attributes.get("CREATED"), leaves, "CREATED")
    return Notification(
        origin=origin,
        code=code,
        status_attributes=parts.status_attributes,
        notification_id=attributes.get("ID"),
        extra=leaves,
        raw=raw,
        **kwargs,
    )


def _parse_time(text: str | None, extra: dict[str, str], name: str) -> datetime | None:
    """Parse ``text``; when it is there but unparsable, keep it in ``extra`` as ``name``."""
    moment = None if text is None else parse_timestamp(text)
    if moment is None and text is not None:
        extra.setdefault(name, text)
    return moment


# --------------------------------------------------------------------------- encoding

_SKYCORE_WIRE: Final[dict[str, str]] = {"OPERATORID": "SPID"}
_HYPHENATED_WIRE: Final[dict[str, str]] = {
    "SENTAS": "sent-as",
    "MMSID": "mms-id",
    "TRACKINGID": "tracking-id",
    "OPERATORID": "operator-id",
    "STATUSDETAILS": "status-details",
    "STATUSCODE": "status-code",
    "AGGREGATORID": "aggregator-id",
    "AUDIONAME": "audio-name",
    "VIDEONAME": "video-name",
    "SCHEDULEDID": "scheduled-id",
    "HISTORYID": "history-id",
    "SMSID": "sms-id",
}
_RESERVED: Final = frozenset({"ORIGIN", "CODE", "BODY", "NOTIFICATION", "POSTBACK", *_TEXT_FIELDS})
_ILLEGAL_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TAG: Final = re.compile(r"[^\W\d]\w*")


def _wire(name: str, dialect: EncodeDialect) -> str:
    if dialect == "hyphenated":
        return _HYPHENATED_WIRE.get(name) or name.lower().replace("_", "-")
    return _SKYCORE_WIRE.get(name, name)


def encode_notification(n: Notification, dialect: EncodeDialect = "skycore") -> bytes:
    """``n`` as a postback body, for the emulator; ``decode_notifications`` reverses it.

    ``skycore``: flat upper-case ``<POSTBACK>`` (carrier id as ``SPID``); ``hyphenated``:
    lower-case ``<postback>`` with ``sent-as``, ``mms-id``, ``operator-id``...; ``legacy``:
    ``<NOTIFICATION ID=.. CREATED=..>`` with ``ORIGIN``, ``CODE`` and the rest in ``BODY``.
    The flat formats carry ``notification_id``/``created`` as ``ID``/``CREATED`` root
    attributes. Pass postbacks (origin GENERATE_PASS) write the code as ``STATUSCODE``.
    An ``extra`` ``TIMESTAMP`` is written only when ``timestamp`` is None.

    Raises ValueError for an empty code, text XML cannot carry, or ``extra`` keys that are
    not canonical names or that name a typed field. Decoding strips leading and trailing
    XML whitespace, so ``decode(encode(n)) == [n]`` holds for texts without it.
    """
    if dialect not in ("skycore", "hyphenated", "legacy"):
        raise ValueError(f"unknown postback dialect {dialect!r}")
    return _unparse({_wire(_root_name(dialect), dialect): _element(n, dialect)})


def encode_legacy_batch(notifications: Iterable[Notification]) -> bytes:
    """Several notifications as one legacy batch: ``<POSTBACK><NOTIFICATION>...``."""
    elements = [_element(n, "legacy") for n in notifications]
    if not elements:
        raise ValueError("a legacy batch needs at least one notification")
    return _unparse({"POSTBACK": {"NOTIFICATION": elements}})


def _root_name(dialect: EncodeDialect) -> str:
    return "NOTIFICATION" if dialect == "legacy" else "POSTBACK"


def _unparse(document: dict[str, Any]) -> bytes:
    text = str(xmltodict.unparse(document, encoding="utf-8"))
    # The serializer writes CR in text verbatim, and parsers turn CR LF into LF.
    return text.replace("\r", "&#13;").encode("utf-8")


def _element(n: Notification, dialect: EncodeDialect) -> dict[str, Any]:
    """The xmltodict element for ``n``: root attributes, then the leaves."""
    _check_encodable(n)
    element: dict[str, Any] = {}
    if n.notification_id is not None:
        element["@" + _wire("ID", dialect)] = n.notification_id
    if n.created is not None:
        element["@" + _wire("CREATED", dialect)] = format_timestamp(n.created)
    leaves = {_wire(name, dialect): value for name, value in _leaves(n, dialect).items()}
    if dialect != "legacy":
        return element | leaves
    head = {key: leaves.pop(key) for key in ("ORIGIN", "CODE", "STATUSCODE") if key in leaves}
    return element | head | {"BODY": leaves or None}


def _leaves(n: Notification, dialect: EncodeDialect) -> dict[str, Any]:
    """Canonical name -> text (or the STATUS element with its attributes)."""
    pass_code = n.origin == "GENERATE_PASS" and "STATUSCODE" not in n.extra
    leaves: dict[str, Any] = {"ORIGIN": n.origin, "STATUSCODE" if pass_code else "CODE": n.code}
    for name, attr in _TEXT_FIELDS.items():
        if getattr(n, attr) is not None:
            leaves[name] = getattr(n, attr)
    if n.status_attributes:
        leaves["STATUS"] = _status_element(n, dialect)
    if n.timestamp is not None:
        leaves["TIMESTAMP"] = format_timestamp(n.timestamp)
    for name, value in n.extra.items():
        leaves.setdefault(name, value)
    return leaves


def _status_element(n: Notification, dialect: EncodeDialect) -> dict[str, str]:
    element = {"@" + _wire(key, dialect): value for key, value in n.status_attributes.items()}
    if n.status is not None and n.status != n.status_attributes.get("TEXT"):
        element["#text"] = n.status
    return element


def _check_encodable(n: Notification) -> None:
    if not n.code:
        raise ValueError("a notification needs a code")
    for key in (*n.extra, *n.status_attributes):
        if not _TAG.fullmatch(key) or _name(key) != key:
            raise ValueError(f"{key!r} is not a canonical postback field name")
    if clash := _RESERVED.intersection(n.extra):
        raise ValueError(f"extra names typed fields {sorted(clash)}; set the fields instead")
    texts = [n.origin, n.code, *n.extra.values(), *n.status_attributes.values()]
    texts += [getattr(n, attr) or "" for attr in (*_TEXT_FIELDS.values(), "notification_id")]
    for text in texts:
        if _ILLEGAL_XML.search(text):
            raise ValueError(f"{text!r} holds characters XML 1.0 cannot carry")
