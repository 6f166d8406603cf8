"""Every exception skycore-async raises, and the table from Skycore E-codes to classes.

The tree::

    SkycoreError
    ├── ValidationError (also ValueError)   bad input, caught before any I/O
    ├── TransportError                      the HTTP exchange failed
    │   ├── ConnectError                    the request never left: safe to retry
    │   │   └── ConnectTimeoutError (also TimeoutError)
    │   └── OutcomeUnknownError             the request was (maybe) written, no answer came
    │       ├── ResponseTimeoutError (also TimeoutError)
    │       └── ConnectionLostError
    ├── ProtocolError                       an answer came, but it is not a Skycore reply
    │                                       (non-2xx, HTML, truncated, not XML); also ambiguous
    ├── ApiError(code, info, to, raw)       Skycore answered STATUS=Failure / ERRORCODE
    │   ├── ThrottledError                  retry after waiting
    │   │   ├── CallIntervalError           E106 "You can call API every X seconds"
    │   │   ├── ThroughputExceededError     E113, E510
    │   │   └── QuotaExceededError          E120 (campaign-fatal)
    │   ├── AuthenticationError             E102-E104 (campaign-fatal)
    │   ├── AccountError                    no API rights, IP not allowed (campaign-fatal)
    │   │   └── BillingError                E713
    │   ├── InvalidRequestError             fix the request, template or account setting
    │   ├── RecipientError                  permanent for this number
    │   └── ServerError                     transient on Skycore's side: retry with backoff
    ├── ClientStateError (also RuntimeError) misuse: client not opened, or closed
    └── ThrottleUnavailableError            the shared throttle's store (Redis) cannot be
                                            reached: nothing was sent (campaign-fatal)

"Ambiguous" errors (``OutcomeUnknownError`` and ``ProtocolError``) mean the request may have been
acted on: Skycore has no idempotency key, so they are never retried unless the caller opts in.

Request error codes and postback codes are separate namespaces (E101 means "'action' required"
in a reply and "could not send MMS" in a postback); this module is about replies only.
"""

from __future__ import annotations

import enum
import math
import re
from typing import ClassVar, Final

__all__ = [
    "AccountError",
    "ApiError",
    "AuthenticationError",
    "BillingError",
    "CallIntervalError",
    "ClientStateError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "ErrorClass",
    "InvalidRequestError",
    "OutcomeUnknownError",
    "ProtocolError",
    "QuotaExceededError",
    "RecipientError",
    "ResponseTimeoutError",
    "ServerError",
    "SkycoreError",
    "ThrottleUnavailableError",
    "ThrottledError",
    "ThroughputExceededError",
    "TransportError",
    "ValidationError",
    "describe_code",
    "error_for_code",
    "parse_interval_seconds",
]


class ErrorClass(enum.Enum):
    """How a failure should be handled: the digest's classification legend."""

    RATE = "rate"  # wait, then resend (the call was rejected, not acted on)
    TRANSIENT = "transient"  # retry with backoff
    RECIPIENT = "recipient"  # permanent for this number
    REQUEST = "request"  # permanent for this request or configuration
    ACCOUNT = "account"  # authentication, rights, billing: stop and alert
    UNKNOWN = "unknown"  # a code this library does not know


class SkycoreError(Exception):
    """Root of every exception raised by skycore-async."""

    #: True when the request may have been acted on although no usable answer came back.
    ambiguous: ClassVar[bool] = False
    #: True when the failure stops a whole campaign (bad key, billing, quota, IP not allowed).
    fatal: ClassVar[bool] = False
    #: The handling class; used by retry policies and by the bulk engine.
    error_class: ClassVar[ErrorClass] = ErrorClass.UNKNOWN
    #: How many HTTP attempts the failed call made (set by the client).
    attempts: int = 1


class ClientStateError(SkycoreError, RuntimeError):
    """The client was used outside ``async with`` or after it was closed."""


class ThrottleUnavailableError(SkycoreError):
    """The shared throttle (Redis) could not be asked for a slot, so nothing was sent.

    Raised by :class:`~skycore_async.redis_throttle.RedisThrottle` when Redis is unreachable,
    times out or fails: a worker never falls back to an unshared limit. Not ambiguous (the
    call was never written) and campaign-fatal: the run stops and its pending recipients stay
    pending for a resume.
    """

    fatal: ClassVar[bool] = True


class ValidationError(SkycoreError, ValueError):
    """Input that Skycore would reject, caught before any network call.

    Attributes:
        field: the keyword argument (snake_case) that is wrong, e.g. ``"client_reference"``.
        code: the E-code the server would have answered, e.g. ``"E110"``.
        message: what is wrong and how to fix it.
    """

    error_class: ClassVar[ErrorClass] = ErrorClass.REQUEST
    #: Caught before any request: no HTTP attempt was made.
    attempts: int = 0

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {message} ({code})")
        self.field = field
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, self.code, self.message))


class TransportError(SkycoreError):
    """The HTTP exchange with Skycore failed."""

    error_class: ClassVar[ErrorClass] = ErrorClass.TRANSIENT


class ConnectError(TransportError):
    """No connection could be made: the request was never written, so a retry is safe."""


class ConnectTimeoutError(ConnectError, TimeoutError):
    """Connecting (or waiting for a pooled connection) took longer than the connect timeout."""


class OutcomeUnknownError(TransportError):
    """The request may have reached Skycore, but no answer came back.

    For a send this means the recipient may or may not get the message. It is not retried
    unless ``RetryPolicy(retry_ambiguous=True)``; bulk runs record it as ``unknown``.
    """

    ambiguous: ClassVar[bool] = True


class ResponseTimeoutError(OutcomeUnknownError, TimeoutError):
    """The request was sent but the answer did not arrive within the read timeout."""


class ConnectionLostError(OutcomeUnknownError):
    """The connection broke after the request started going out."""


class ProtocolError(SkycoreError):
    """The server answered, but not with a Skycore XML reply.

    Non-2xx statuses, HTML error pages, empty, truncated or oversized bodies, XML with a
    DTD, and XML with no ``RESPONSE``/``STATUS`` all land here. Because a proxy or a broken
    reply may hide an accepted send, this is ambiguous for sends.

    Attributes:
        status: the HTTP status code (0 when unknown).
        body: the first bytes of the body, for diagnosis.
    """

    ambiguous: ClassVar[bool] = True
    error_class: ClassVar[ErrorClass] = ErrorClass.TRANSIENT

    def __init__(self, message: str, *, status: int = 0, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body[:512]


class ApiError(SkycoreError):
    """Skycore answered ``STATUS=Failure`` (or with an ``ERRORCODE``).

    Attributes:
        code: the E-code, e.g. ``"E110"``.
        info: Skycore's ``ERRORINFO`` text (may contain substituted values).
        to: the recipient echoed in the reply, if any.
        raw: the raw reply bytes.
    """

    def __init__(
        self, code: str, info: str = "", *, to: str | None = None, raw: bytes = b""
    ) -> None:
        meaning = describe_code(code)
        text = info or meaning or "no error text"
        super().__init__(f"{code}: {text}{_hint(type(self))}")
        self.code = code
        self.info = info
        self.to = to
        self.raw = raw

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_api_error, (type(self), self.code, self.info, self.to, self.raw))


def _rebuild_api_error(
    cls: type[ApiError], code: str, info: str, to: str | None, raw: bytes
) -> ApiError:
    return cls(code, info, to=to, raw=raw)


class ThrottledError(ApiError):
    """The call was rejected by a rate, throughput or quota limit; it was not acted on."""

    error_class: ClassVar[ErrorClass] = ErrorClass.RATE

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before calling again, when the reply says so."""
        return None


class CallIntervalError(ThrottledError):
    """E106: the account may call the API only every X seconds."""

    @property
    def interval(self) -> float | None:
        """X parsed from the error text, or None when the text carries no usable number."""
        return parse_interval_seconds(self.info)

    @property
    def retry_after(self) -> float | None:
        return self.interval


class ThroughputExceededError(ThrottledError):
    """E113: the per-action throughput setting was exceeded; the call was rejected."""


class QuotaExceededError(ThrottledError):
    """E120: the account has used up its API request quota. Stops a campaign."""

    fatal: ClassVar[bool] = True


class AuthenticationError(ApiError):
    """The API key (or USER/PASS) is missing or wrong. Stops a campaign."""

    error_class: ClassVar[ErrorClass] = ErrorClass.ACCOUNT
    fatal: ClassVar[bool] = True


class AccountError(ApiError):
    """The account may not do this: no API rights, action not allowed, IP not whitelisted."""

    error_class: ClassVar[ErrorClass] = ErrorClass.ACCOUNT
    fatal: ClassVar[bool] = True


class BillingError(AccountError):
    """E713: billing problem on the account. Stops a campaign."""


class InvalidRequestError(ApiError):
    """The request, template or account configuration is wrong; resending will not help."""

    error_class: ClassVar[ErrorClass] = ErrorClass.REQUEST


class RecipientError(ApiError):
    """Permanent failure for this recipient (invalid, blacklisted, carrier not supported)."""

    error_class: ClassVar[ErrorClass] = ErrorClass.RECIPIENT


class ServerError(ApiError):
    """A transient failure on Skycore's side (internal error, carrier lookup, encoding)."""

    error_class: ClassVar[ErrorClass] = ErrorClass.TRANSIENT


_HINTS: Final[dict[type[ApiError], str]] = {
    CallIntervalError: " (lower Limits.rate or raise Limits.min_interval for this account)",
    ThroughputExceededError: " (lower Limits.rate for this action)",
    QuotaExceededError: " (the account's API request quota is used up; ask Skycore or wait)",
    AuthenticationError: " (check the API key; it may have been regenerated)",
}


def _hint(cls: type[ApiError]) -> str:
    return _HINTS.get(cls, "")


# One line per code: "CODE Class meaning". Ranges are expanded below. Sources: the digest §4.
_CODE_SPEC: Final = """
E100 InvalidRequestError Invalid request: make a GET/POST XML request with all required variables
E101 InvalidRequestError 'action' required or invalid action
E102 AuthenticationError 'user' or 'api_key' required
E103 AuthenticationError 'pass' (md5 of password) required
E104 AuthenticationError User authentication failed (invalid API key)
E105 AccountError Account has no API rights
E106 CallIntervalError You can call API every X seconds
E107 AccountError Account has no rights to use this action
E108 InvalidRequestError XML parse error
E109 AccountError API not activated
E110 RecipientError Invalid receiver number
E111 InvalidRequestError Invalid shortcode or sender
E112 AccountError IP not whitelisted, call rejected
E113 ThroughputExceededError Set throughput exceeded for this API action. API call rejected.
E114 RecipientError Phone number is blacklisted, call rejected
E120 QuotaExceededError Account has reached the API request limit
E150 InvalidRequestError 'newuser' required
E151 InvalidRequestError 'newuser' already exists
E152 InvalidRequestError 'newpass' required
E153 ServerError User not created, internal error
E154 ServerError User not created, internal error
E170 InvalidRequestError 'campaignname' required
E171 InvalidRequestError 'brandname' required
E172 ServerError Campaign not created, internal error, try later
E173 InvalidRequestError 'mailingaddress' required
E200 InvalidRequestError No MMS templates were created in this account
E201 InvalidRequestError Receiver number required
E212 InvalidRequestError 'pagenumber' invalid
E213 InvalidRequestError 'itemsperpage' invalid
E214 InvalidRequestError 'startdate' invalid
E223 InvalidRequestError More than one object in the same slide
E224 InvalidRequestError Audio/video/image not allowed with an object in the same slide
E225 InvalidRequestError Too many slides
E226 InvalidRequestError Audio and video in the same slide
E227 InvalidRequestError Video and image in the same slide
E228 InvalidRequestError Slide text too long
E229 InvalidRequestError Content not allowed
E230 InvalidRequestError Bad slide duration
E241 InvalidRequestError Content does not exist (invalid MMS id)
E301 InvalidRequestError 'name' required
E302 InvalidRequestError No slides
E303 InvalidRequestError Slide is empty
E304 InvalidRequestError 'subject' required
E311 InvalidRequestError 'name' required
E312 InvalidRequestError No slides
E313 InvalidRequestError Slide is empty
E314 InvalidRequestError 'subject' required
E331 InvalidRequestError Image in slide too big
E332 InvalidRequestError Audio in slide too big
E333 InvalidRequestError Video in slide too big
E334 InvalidRequestError Text in slide too long
E335 InvalidRequestError vCard file in slide too big
E336 InvalidRequestError iCal file in slide too big
E337 InvalidRequestError PDF file in slide too big
E338 InvalidRequestError Passbook file in slide too big
E341 InvalidRequestError Image file in slide corrupted
E343 InvalidRequestError Video in slide has missing codecs
E351 ServerError Could not copy image in slide (fetching the URL failed)
E352 ServerError Could not copy audio in slide (fetching the URL failed)
E353 ServerError Could not copy video in slide (fetching the URL failed)
E355 ServerError Could not copy vCard in slide (fetching the URL failed)
E356 ServerError Could not copy iCal in slide (fetching the URL failed)
E357 ServerError Could not copy PDF in slide (fetching the URL failed)
E358 ServerError Could not copy Passbook in slide (fetching the URL failed)
E400..E406 InvalidRequestError E-mail template or campaign error
E503 ServerError Internal error
E506..E509 InvalidRequestError Statistics dates missing, invalid or too long
E510 ThroughputExceededError Statistics lookup too frequent
E618 ServerError Carrier lookup failed, please retry
E619 RecipientError Carrier not provisioned
E620 InvalidRequestError 'mmsid' required
E621 InvalidRequestError 'to' required
E622 InvalidRequestError Fallback SMS text required
E623 InvalidRequestError 'to' may contain up to 100 numbers
E624 InvalidRequestError 'tocampaign' required
E625 InvalidRequestError 'mmsid' invalid
E626 ServerError Content unavailable, encoding in progress, try again later
E627 InvalidRequestError Invalid or missing serviceid
E628 RecipientError Operator not supported
E629 InvalidRequestError Unrecognized content type
E630..E633 InvalidRequestError Barcode data missing or invalid
E640..E642 InvalidRequestError MMS inbox id required, invalid or empty
E643 ServerError MMS inbox cleanup failed
E650 InvalidRequestError 'operator id' required
E651 InvalidRequestError 'operator id' not found
E652 InvalidRequestError DISABLEFALLBACKSMS must be 'yes', 'no' or empty
E655 InvalidRequestError FORCE_SEND_AS_SMS must be true or false
E712 InvalidRequestError 'text' required
E713 BillingError There is a billing problem on your account
E714 InvalidRequestError Missing or invalid campaign id
E715 RecipientError Number is not subscribed to this campaign
E718 InvalidRequestError 'campaignref' required
E721 InvalidRequestError Invalid campaignref
E803 InvalidRequestError 'barcodevalue' required
E801..E805 InvalidRequestError Passbook pass data or template error
E806 ServerError Passbook internal error
E807..E808 InvalidRequestError Passbook pass data or template error
E809 ServerError Passbook internal error
E821 ServerError Passbook internal error
E822..E829 InvalidRequestError Passbook pass data or template error
E830 ServerError Passbook internal error
E831..E833 InvalidRequestError Passbook pass data or template error
E840..E899 InvalidRequestError Pass field not dynamic in template, or invalid relevance data
E901..E903 InvalidRequestError Subscribe/unsubscribe request invalid
E904..E905 ServerError Could not subscribe or unsubscribe
E911..E918 InvalidRequestError E-mail subscription error
E950..E999 InvalidRequestError iBeacon field not dynamic or invalid
E1501 InvalidRequestError No information added for the vCard
E1502 InvalidRequestError vCard photo must be jpg, png or gif
E1506 InvalidRequestError vCard phone number invalid
E1507 InvalidRequestError vCard phone number blank
E1508 InvalidRequestError vCard e-mail invalid
E1511 InvalidRequestError vCard photo URL does not exist
E1515 InvalidRequestError vCard first or last name required
E1516 InvalidRequestError vCard phone, e-mail or address label invalid
"""

_CLASSES: Final[dict[str, type[ApiError]]] = {
    cls.__name__: cls
    for cls in (
        CallIntervalError,
        ThroughputExceededError,
        QuotaExceededError,
        AuthenticationError,
        AccountError,
        BillingError,
        InvalidRequestError,
        RecipientError,
        ServerError,
    )
}


def _expand(spec: str) -> dict[str, tuple[type[ApiError], str]]:
    table: dict[str, tuple[type[ApiError], str]] = {}
    for line in spec.strip().splitlines():
        codes, cls_name, meaning = line.split(" ", 2)
        first, _, last = codes.partition("..")
        numbers = range(int(first[1:]), int((last or first)[1:]) + 1)
        for number in numbers:
            # setdefault: a code listed on its own line before a range that covers it wins.
            table.setdefault(f"E{number}", (_CLASSES[cls_name], meaning))
    return table


#: Every request error code in the digest, mapped to its exception class and meaning.
CODE_TABLE: Final[dict[str, tuple[type[ApiError], str]]] = _expand(_CODE_SPEC)


def describe_code(code: str) -> str:
    """The documented meaning of a reply E-code, or ``""`` for an unknown code."""
    entry = CODE_TABLE.get(code.strip().upper())
    return entry[1] if entry else ""


def error_for_code(
    code: str, info: str = "", *, to: str | None = None, raw: bytes = b""
) -> ApiError:
    """Build the exception for a failed reply: the class comes from ``CODE_TABLE``.

    Unknown codes give a plain ``ApiError`` (never retried, never campaign-fatal).
    """
    normalized = code.strip().upper()
    entry = CODE_TABLE.get(normalized)
    cls = entry[0] if entry else ApiError
    return cls(normalized, info, to=to, raw=raw)


_ANCHOR = re.compile(r"\b(every|least|interval|wait)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(\d+(?:[.,]\d+)?|[.,]\d+)\s*(ms|milli\w*|s|sec\w*|min\w*)?", re.IGNORECASE)

#: Bounds applied to a parsed E106 interval: a typo in the text must not stall a campaign.
MIN_INTERVAL_SECONDS: Final = 0.001
MAX_INTERVAL_SECONDS: Final = 3600.0


def parse_interval_seconds(text: str) -> float | None:
    """Parse X from E106's "You can call API every X seconds", defensively.

    Accepts "every 2 seconds", "every 0.5 sec", "at least 500 ms", "every 1 minute",
    "every 0,5 seconds". Returns None when no number is present; clamps the result to
    [``MIN_INTERVAL_SECONDS``, ``MAX_INTERVAL_SECONDS``].
    """
    text = text[:500]
    # Prefer the number after "every"/"least"/"interval": "API 1.3: call every 2 seconds" is 2.
    anchor = _ANCHOR.search(text)
    match = _NUMBER.search(text, anchor.end()) if anchor else None
    match = match or _NUMBER.search(text)
    if match is None:
        return None
    try:
        value = float(match.group(1).replace(",", "."))
    except ValueError:  # pragma: no cover - the regex only admits numbers
        return None
    unit = (match.group(2) or "s").lower()
    if unit.startswith("ms") or unit.startswith("milli"):
        value /= 1000.0
    elif unit.startswith("min"):
        value *= 60.0
    if not math.isfinite(value):
        return None
    return min(max(value, MIN_INTERVAL_SECONDS), MAX_INTERVAL_SECONDS)
