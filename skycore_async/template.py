"""A campaign's sendSavedMMS request, encoded once, with only the number filled in per send.

xmltodict costs ~50 us per request (perf-notes); a bulk run sends the same fields to every
recipient, so the shared part is encoded (and url-quoted) once by the regular encoder and each
send appends only ``<TO>number</TO></REQUEST>``. Because url-quoting works character by
character, ``quote_plus(a + b) == quote_plus(a) + quote_plus(b)``: the result is byte for byte
what :func:`~skycore_async.protocol.encode_form_body` gives for the same request with ``TO``
last (a test checks this). Pure: no I/O.
"""

from __future__ import annotations

import urllib.parse

import attrs

from .fields import ApiRequest, Dialect, wire_name
from .protocol import encode_xml

__all__ = ["SavedMmsTemplate"]


def _quote(text: str) -> bytes:
    return urllib.parse.quote_plus(text).encode("ascii")


@attrs.frozen(repr=False)  # the prefix holds the API key: no field-by-field repr
class SavedMmsTemplate:
    """The form body of a request whose fields are all fixed except ``TO``.

    Args:
        request: the request with every field but ``TO`` (credentials included).
        dialect: the XML dialect.
    """

    _prefix: bytes
    _to_open: bytes
    _to_close_and_root: bytes

    @classmethod
    def build(cls, request: ApiRequest, dialect: Dialect) -> SavedMmsTemplate:
        """Encode the shared part of ``request`` once."""
        if "TO" in request.fields:
            raise ValueError("the template request must not contain TO")
        xml = encode_xml(request, dialect)
        close_root = f"</{wire_name('REQUEST', dialect)}>"
        if not xml.endswith(close_root):  # pragma: no cover - encode_xml always ends so
            raise ValueError("unexpected encoder output")
        to_tag = wire_name("TO", dialect)
        return cls(
            prefix=b"xml=" + _quote(xml[: -len(close_root)]),
            to_open=_quote(f"<{to_tag}>"),
            to_close_and_root=_quote(f"</{to_tag}>{close_root}"),
        )

    def body(self, number: str) -> bytes:
        """The form body for one (already validated, digits-only) number."""
        return b"".join(
            (self._prefix, self._to_open, number.encode("ascii"), self._to_close_and_root)
        )
