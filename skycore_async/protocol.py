"""The wire format, both directions, for client and emulator. Pure: no asyncio, no aiohttp.

Client side: :func:`encode_xml`, :func:`encode_form_body`, :func:`encode_query` turn an
:class:`~skycore_async.fields.ApiRequest` into what goes on the wire; :func:`decode_response`
turns reply bytes into an :class:`ApiResponse` (or raises :class:`ProtocolError`), and
:func:`raise_for_failure` turns a failed reply into the typed :class:`ApiError`.

Emulator side: :func:`decode_request` reads any documented request form (XML in a form field
``xml``/``XML``, a raw XML body, or GET query parameters; both dialects; the legacy
``CONTENT/SEQUENCE`` slide layout) back into an ``ApiRequest``; :func:`encode_response` writes
a reply.

Decoding is tolerant, as the digest asks: tag case, ``-``/``_`` spelling, element order, an XML
declaration, whitespace and unknown extra fields do not matter. Documents with a DTD or entity
declarations are refused outright.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple
from xml.parsers import expat

import xmltodict

from .errors import ApiError, ProtocolError, error_for_code
from .fields import (
    ApiRequest,
    Dialect,
    canon,
    canon_action,
    wire_name,
)

__all__ = [
    "ApiResponse",
    "decode_request",
    "decode_response",
    "encode_form_body",
    "encode_query",
    "encode_response",
    "encode_xml",
    "has_get_form",
    "raise_for_failure",
]

#: Paths (from the request root) whose value is a list, even when only one element arrived.
_LIST_PATHS: Final = frozenset(
    {
        ("SLIDE",),
        ("CUSTOMTEXT",),
        ("DYNAMICVCARD", "PHONE"),
        ("DYNAMICVCARD", "EMAIL"),
        ("DYNAMICVCARD", "PHYSICALADDRESS"),
    }
)
#: Fields with nested structure: they have no documented GET mapping (digest §1.4).
_NESTED_ONLY: Final = frozenset({"SLIDE", "DYNAMICVCARD"})
_DTD: Final = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
#: Deepest element nesting a document may have (real ones have fewer than 8 levels).
_MAX_DEPTH: Final = 32
_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'


# --------------------------------------------------------------------------- encoding


def encode_xml(request: ApiRequest, dialect: Dialect = "skycore") -> str:
    """The request as an XML document in ``dialect`` (xmltodict does the escaping)."""
    body: dict[str, Any] = {wire_name("ACTION", dialect): request.action}
    for name, value in request.fields.items():
        if value is None:
            continue
        if name == "SLIDE" and request.legacy_content:
            body["CONTENT"] = _legacy_content(request, value, dialect)
        elif name == "NAME" and request.legacy_content:
            continue  # written inside CONTENT
        else:
            body[wire_name(name, dialect)] = _encode_value(name, value, dialect)
    root = wire_name("REQUEST", dialect)
    xml: str = xmltodict.unparse({root: body}, full_document=False)
    # XML parsers turn a literal CR into LF; a character reference keeps it intact.
    return _XML_DECLARATION + xml.replace("\r", "&#13;")


def _encode_value(name: str, value: Any, dialect: Dialect) -> Any:
    if name == "DATA":
        return {_data_tag(k, dialect): str(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {wire_name(k, dialect): _encode_value(k, v, dialect) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode_value(name, item, dialect) for item in value]
    return str(value)


def _data_tag(name: str, dialect: Dialect) -> str:
    # Merge-tag names are the caller's own: only their case follows the dialect.
    return name.upper() if dialect == "skycore" else name.lower()


def _legacy_content(
    request: ApiRequest, slides: Sequence[Mapping[str, Any]], dialect: Dialect
) -> Any:
    """The 2014 layout: CONTENT/NAME/SEQUENCE/SLIDE with the duration as an attribute."""
    encoded = []
    for slide in slides:
        item = {
            wire_name(k, dialect): _encode_value(k, v, dialect)
            for k, v in slide.items()
            if k != "DURATION"
        }
        if slide.get("DURATION") is not None:
            item = {"@duration": str(slide["DURATION"]), **item}
        encoded.append(item)
    content: dict[str, Any] = {}
    if request.get("NAME") is not None:
        content[wire_name("NAME", dialect)] = str(request.fields["NAME"])
    content[wire_name("SEQUENCE", dialect)] = {wire_name("SLIDE", dialect): encoded}
    return content


def encode_form_body(request: ApiRequest, dialect: Dialect = "skycore") -> bytes:
    """The documented POST body: ``xml=<url-encoded XML>`` (application/x-www-form-urlencoded)."""
    return b"xml=" + urllib.parse.quote_plus(encode_xml(request, dialect)).encode("ascii")


def has_get_form(request: ApiRequest) -> bool:
    """Whether the request can travel as GET query parameters (no slides, no vCard)."""
    return not request.legacy_content and not any(
        request.fields.get(name) is not None for name in _NESTED_ONLY
    )


def encode_query(request: ApiRequest, dialect: Dialect = "skycore") -> list[tuple[str, str]]:
    """The GET form (digest §1.4): lower-case names, ``customtext_N`` and ``data_<name>``.

    Raises:
        ValueError: the request has nested fields with no GET mapping (see
            :func:`has_get_form`).
    """
    if not has_get_form(request):
        raise ValueError(f"{request.action} with slides or a vCard has no GET form; use POST")
    params = [(_get_name("ACTION", dialect), request.action)]
    for name, value in request.fields.items():
        if value is None:
            continue
        if name == "DATA":
            params += [(f"data_{k.lower()}", str(v)) for k, v in value.items()]
        elif name == "CUSTOMTEXT":
            params += [(f"customtext_{item['SLIDE']}", str(item["VALUE"])) for item in value]
        else:
            params.append((_get_name(name, dialect), str(value)))
    return params


def _get_name(name: str, dialect: Dialect) -> str:
    return name.lower() if dialect == "skycore" else wire_name(name, dialect)


# --------------------------------------------------------------------------- replies


class ApiResponse(NamedTuple):
    """A decoded reply: ``status`` plus every field by canonical name (``TRACKINGID``, ...).

    Attributes:
        status: ``"Success"`` or ``"Failure"`` as sent (``""`` if absent but ERRORCODE is).
        fields: canonical field name to text; unknown extra fields are kept.
        raw: the reply bytes.

    (A NamedTuple rather than an attrs class: one is built per send on the bulk hot path.)
    """

    status: str
    fields: Mapping[str, str]
    raw: bytes = b""

    def __repr__(self) -> str:
        return f"ApiResponse(status={self.status!r}, fields={dict(self.fields)!r})"

    @property
    def failed(self) -> bool:
        """Failure is ``STATUS=Failure`` or any ``ERRORCODE`` (as the Ruby gem does)."""
        if self.status == "Success" and "ERRORCODE" not in self.fields:
            return False  # the common case, decided without normalising the status
        return self.status.strip().lower() == "failure" or bool(self.fields.get("ERRORCODE"))

    def get(self, name: str) -> str | None:
        """A field by canonical name, ``None`` when absent or empty."""
        return self.fields.get(name) or None


def decode_response(body: bytes, *, status: int = 200) -> ApiResponse:
    """Decode a reply body. Anything that is not a Skycore ``RESPONSE`` is a ProtocolError.

    A non-2xx status is a ProtocolError too, unless the body is a well-formed failure reply
    with an ``ERRORCODE`` (then the code is what the caller needs to see).
    """
    fields = _fast_reply_fields(body)
    if fields is None:
        fields = _slow_reply_fields(body, status)
    said = fields.pop("STATUS", "")
    if not said and "ERRORCODE" not in fields:
        raise ProtocolError(
            f"HTTP {status}: reply has neither STATUS nor ERRORCODE", status=status, body=body
        )
    if not 200 <= status < 300 and not fields.get("ERRORCODE"):
        raise ProtocolError(f"HTTP {status} from the API", status=status, body=body)
    return _reply(ApiResponse, (said, fields, body))


# One reply is built per send: tuple.__new__ skips the NamedTuple's Python-level constructor.
_reply = tuple.__new__


# A flat reply: optional declaration, <RESPONSE>, simple leaves with no markup or entities.
# Anything else (attributes, nesting, CDATA, escapes, comments, empty elements) returns None
# and takes the xmltodict path; tests check both paths agree. Splitting on "<" costs a
# quarter of a regex scan, and this runs once per send.
_TAG: Final = re.compile(rb"[A-Za-z][\w-]*\Z")
_ROOTS: Final = (b"RESPONSE>", b"response>")
_TAGS: dict[bytes, tuple[str, bytes]] = {}  # raw tag -> (canonical name, its closing part)


# Replies from one server repeat a few shapes (the success reply, a failure reply). The first
# time a shape is seen it is compiled into one regex that matches exactly that sequence of
# flat leaves, one named group per field; later replies of that shape are decoded by a single
# match and its groupdict(), both in C. A value with whitespace at either end does not match
# (the lookarounds), since it needs stripping: such a body, like any body no learned shape
# matches, takes the general path below, which defines the result. The regex runs on text
# with "&" ruled out by one scan of the whole body first: a single-character class ([^<]) is
# several times cheaper in the regex engine than [^<&], and this runs once per send.
_SHAPES: dict[tuple[bytes, ...], re.Pattern[str]] = {}
# An int, not b"&": "int in bytes" is one memchr, "bytes in bytes" a general substring search
# that costs ten times as much on a reply-sized body.
_AMPERSAND: Final = ord("&")
_MAX_SHAPES: Final = 16


def _fast_reply_fields(body: bytes) -> dict[str, str] | None:
    if _SHAPES and _AMPERSAND not in body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        for pattern in _SHAPES.values():
            match = pattern.match(text)
            if match is not None:
                return match.groupdict()
    return _general_fast_fields(body)


def _learn_shape(root: bytes, tags: list[bytes]) -> None:
    key = (root, *tags)
    names = [_TAGS[tag][0] for tag in tags]
    if key in _SHAPES or len(_SHAPES) >= _MAX_SHAPES or len(set(names)) != len(names):
        return  # a repeated field keeps its first value: leave those to the general path
    if not all(name.isidentifier() for name in names):
        return  # not usable as a group name
    leaves = "".join(
        rf"\s*+<{re.escape(t.decode())}>(?!\s)(?P<{name}>[^<]*+)(?<!\s)</{re.escape(t.decode())}>"
        for t, name in zip(tags, names, strict=True)
    )
    root_name = re.escape(root[:-1].decode())
    pattern = rf"\s*+(?:<\?[^<>]*\?>\s*+)?<{root_name}>{leaves}\s*+</{root_name}>\s*+\Z"
    # Unicode \s, as str.strip() uses on the general path. Possessive quantifiers (*+): what
    # follows each one can never match what it took, so they only save backtracking records.
    _SHAPES[key] = re.compile(pattern)


def _general_fast_fields(body: bytes) -> dict[str, str] | None:
    parts = body.split(b"<")
    if len(parts) < 3 or parts[0].strip():
        return None
    first = 2 if parts[1][:1] == b"?" and parts[1].rstrip().endswith(b"?>") else 1
    root, last = parts[first].rstrip(), len(parts) - 1
    if root not in _ROOTS or parts[last].rstrip() != b"/" + root or (last - first) % 2 != 1:
        return None
    fields: dict[str, str] = {}
    tags: list[bytes] = []
    try:
        for i in range(first + 1, last, 2):
            tag, found, text = parts[i].partition(b">")
            entry = _TAGS.get(tag) if found else None
            if entry is None:
                if not found or not _TAG.match(tag):
                    return None
                entry = _TAGS.setdefault(tag, (canon(tag.decode("ascii")), b"/" + tag + b">"))
            name, close = entry
            after = parts[i + 1]
            if (after != close and after.rstrip() != close) or _AMPERSAND in text:
                return None
            tags.append(tag)
            if name not in fields:
                fields[name] = text.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    _learn_shape(root, tags)
    return fields


def _slow_reply_fields(body: bytes, status: int) -> dict[str, str]:
    try:
        root, node = _parse_root(body)
    except ProtocolError as exc:
        raise ProtocolError(f"HTTP {status}: {exc}", status=status, body=body) from None
    if root != "RESPONSE":
        raise ProtocolError(
            f"HTTP {status}: root element is <{root}>, not <RESPONSE>", status=status, body=body
        )
    if not isinstance(node, Mapping):
        raise ProtocolError(f"HTTP {status}: <RESPONSE> has no fields", status=status, body=body)
    return _flatten_reply(node)


def _flatten_reply(node: Mapping[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in node.items():
        if key.startswith(("@", "#")):
            continue
        fields.setdefault(canon(key), _text(value))  # first spelling wins, as in the fast path
    return fields


def _text(value: Any) -> str:
    """Text of a leaf; the first item of a repeated leaf; the text part of a mixed element."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return _text(value[0]) if value else ""
    if isinstance(value, Mapping):
        return _text(value.get("#text"))
    return str(value)


def raise_for_failure(reply: ApiResponse) -> ApiResponse:
    """Return ``reply`` if it is a success, else raise the typed :class:`ApiError`."""
    if reply.failed:
        raise _error_from(reply)
    return reply


def _error_from(reply: ApiResponse) -> ApiError:
    code = reply.get("ERRORCODE") or "E000"
    return error_for_code(code, reply.get("ERRORINFO") or "", to=reply.get("TO"), raw=reply.raw)


def encode_response(fields: Iterable[tuple[str, str]], dialect: Dialect = "skycore") -> bytes:
    """Write a reply, e.g. ``[("STATUS", "Success"), ("TRACKINGID", "...")]`` (emulator side)."""
    body = {wire_name(name, dialect): value for name, value in fields}
    xml: str = xmltodict.unparse({wire_name("RESPONSE", dialect): body}, full_document=False)
    return (_XML_DECLARATION + xml.replace("\r", "&#13;")).encode("utf-8")


# --------------------------------------------------------------------------- requests


def decode_request(
    body: bytes, *, content_type: str = "", query: Sequence[tuple[str, str]] = ()
) -> tuple[ApiRequest, Dialect]:
    """Read a request in any documented form (emulator side).

    Order of preference: the form field ``xml``/``XML`` of a url-encoded body, a raw XML
    body, then GET-style parameters (from ``query``, or from a url-encoded body without an
    ``xml`` field).
    """
    form = _form_fields(body, content_type)
    xml = next((v for k, v in form if k.lower() == "xml"), None)
    if xml is None and body.lstrip()[:1] == b"<":
        xml = body.decode("utf-8", "replace")
    if xml is not None:
        return _decode_xml_request(xml.encode("utf-8"))
    params = list(query) or form
    if not params:
        raise ProtocolError("empty request: no XML and no parameters", body=body)
    return _decode_params(params)


def _form_fields(body: bytes, content_type: str) -> list[tuple[str, str]]:
    looks_like_form = "x-www-form-urlencoded" in content_type.lower() or body[:4].lower() == b"xml="
    if not body or not looks_like_form:
        return []
    try:
        return urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"undecodable form body: {exc}", body=body) from None


def _decode_xml_request(body: bytes) -> tuple[ApiRequest, Dialect]:
    root_name, node = _parse_root(body, strip=False)
    if root_name != "REQUEST" or not isinstance(node, Mapping):
        raise ProtocolError(f"root element is <{root_name}>, not <REQUEST>", body=body)
    dialect: Dialect = (
        "hyphenated" if _raw_root(body).islower() or _has_hyphens(node) else "skycore"
    )
    fields: dict[str, Any] = {}
    legacy = False
    for key, value in node.items():
        if key.startswith(("@", "#")):
            continue
        name = canon(key)
        if name == "CONTENT":
            legacy = True
            fields.update(_legacy_fields(value))
        else:
            fields[name] = _request_value((name,), value)
    action = canon_action(_text(fields.pop("ACTION", "")))
    return ApiRequest(action=action, fields=fields, legacy_content=legacy), dialect


def _raw_root(body: bytes) -> str:
    match = re.search(rb"<\s*([A-Za-z][\w.-]*)", _skip_prolog(body))
    return match.group(1).decode("ascii", "replace") if match else "REQUEST"


def _skip_prolog(body: bytes) -> bytes:
    return re.sub(rb"^\s*(<\?.*?\?>\s*|<!--.*?-->\s*)*", b"", body, count=1, flags=re.DOTALL)


def _has_hyphens(node: Mapping[str, Any]) -> bool:
    return any("-" in key for key in node)


def _request_value(path: tuple[str, ...], value: Any, *, item: bool = False) -> Any:
    """Canonicalise one decoded field: str leaves, lists where lists belong, DATA as a dict."""
    if path == ("DATA",):
        return _data_value(value)
    if path in _LIST_PATHS and not item:
        items = value if isinstance(value, list) else [value]
        return [_request_value(path, entry, item=True) for entry in items]
    if isinstance(value, Mapping):
        children = {k: v for k, v in value.items() if not k.startswith(("@", "#"))}
        if not children:
            return _leaf(value)
        return {canon(k): _request_value((*path, canon(k)), v) for k, v in children.items()}
    return _leaf(value)


def _data_value(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return _leaf(value)  # a malformed DATA; validation reports it
    return {k.lower(): _leaf(v) for k, v in value.items() if not k.startswith(("@", "#"))}


def _leaf(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        text = value.get("#text")
        return text if isinstance(text, str) else ""
    if isinstance(value, list):
        return _leaf(value[0]) if value else ""
    return str(value)


def _legacy_fields(content: Any) -> dict[str, Any]:
    """CONTENT/NAME/SEQUENCE/SLIDE duration="5" -> NAME and flat SLIDE dicts with DURATION."""
    if not isinstance(content, Mapping):
        return {"SLIDE": []}
    fields: dict[str, Any] = {}
    sequence: Any = None
    for key, value in content.items():
        if canon(key) == "NAME":
            fields["NAME"] = _leaf(value)
        elif canon(key) == "SEQUENCE":
            sequence = value
    raw_slides = (
        sequence.get(next((k for k in sequence if canon(k) == "SLIDE"), ""), [])
        if isinstance(sequence, Mapping)
        else []
    )
    items = raw_slides if isinstance(raw_slides, list) else [raw_slides]
    fields["SLIDE"] = [_legacy_slide(item) for item in items]
    return fields


def _legacy_slide(item: Any) -> Any:
    slide = _request_value(("SLIDE",), item, item=True)
    if isinstance(item, Mapping) and isinstance(slide, dict):
        duration = next((v for k, v in item.items() if k.lower() == "@duration"), None)
        if duration is not None:
            slide["DURATION"] = str(duration)
    return slide


def _decode_params(params: Sequence[tuple[str, str]]) -> tuple[ApiRequest, Dialect]:
    fields: dict[str, Any] = {}
    data: dict[str, str] = {}
    custom: list[dict[str, str]] = []
    dialect: Dialect = "skycore"
    for key, value in params:
        lowered = key.lower()
        if "-" in key:
            dialect = "hyphenated"
        if lowered.startswith("data_"):
            data[lowered[5:]] = value
        elif lowered.startswith("customtext_"):
            custom.append({"VALUE": value, "SLIDE": lowered[11:]})
        else:
            fields[canon(key)] = value
    if data:
        fields["DATA"] = data
    if custom:
        fields["CUSTOMTEXT"] = custom
    action = canon_action(str(fields.pop("ACTION", "")))
    return ApiRequest(action=action, fields=fields), dialect


# --------------------------------------------------------------------------- parsing


def _parse_root(body: bytes, *, strip: bool = True) -> tuple[str, Any]:
    """Parse XML safely; return (canonical root name, root node)."""
    if not body.strip():
        raise ProtocolError("empty body", body=body)
    if _DTD.search(body):
        raise ProtocolError("XML with a DTD or entity declarations is refused", body=body)
    try:
        doc = xmltodict.parse(
            body, strip_whitespace=strip, disable_entities=True, expat=_NoDoctypeExpat
        )
    except Exception as exc:  # expat errors, ValueError for entities, UnicodeDecodeError...
        raise ProtocolError(
            f"not well-formed XML: {type(exc).__name__}: {exc}", body=body
        ) from None
    if not isinstance(doc, Mapping) or len(doc) != 1:
        raise ProtocolError("XML document has no single root element", body=body)
    ((root, node),) = doc.items()
    return canon(root), _drop_blank_text(node)


def _refuse_doctype(*_args: object) -> None:
    raise ValueError("XML with a DTD is refused")


class _NoDoctypeExpat:
    """Stands in for the expat module so that every parser refuses a DOCTYPE.

    The byte scan in :func:`_parse_root` misses a DTD in a UTF-16 document; this does not.
    """

    @staticmethod
    def ParserCreate(*args: Any) -> Any:
        parser = expat.ParserCreate(*args)
        parser.StartDoctypeDeclHandler = _refuse_doctype
        return parser


def _drop_blank_text(node: Any, depth: int = 0) -> Any:
    """Remove whitespace-only text between child elements (kept when parsing unstripped).

    Raises ProtocolError for documents nested deeper than ``_MAX_DEPTH`` elements (which
    would otherwise exhaust the recursion limit here and in the decoders after it).
    """
    if isinstance(node, Mapping):
        if depth >= _MAX_DEPTH:
            raise ProtocolError(f"XML is nested deeper than {_MAX_DEPTH} elements")
        return {
            k: _drop_blank_text(v, depth + 1)
            for k, v in node.items()
            if not (k == "#text" and isinstance(v, str) and not v.strip() and len(node) > 1)
        }
    if isinstance(node, list):  # a repeated element: its items are at the same depth
        return [_drop_blank_text(item, depth) for item in node]
    return node
