"""A local emulator of the Skycore MMS XML API, for integration tests, demos and benchmarks.

The emulator is an aiohttp server that speaks the Skycore wire protocol: it decodes every
documented request form (``xml=`` form field, multipart field ``XML``, raw XML body, or GET
query parameters; the upper-case 1.3 dialect and the lower-case hyphenated one; the legacy
``CONTENT/SEQUENCE`` layout with ``USER``/``PASS`` authentication), applies the checks the real
service applies (authentication, throttling, :func:`~skycore_async.validation.validate_request`,
templates, campaigns, blacklist), records what it accepted and answers in the request's dialect.
It can also inject faults (dropped connections, truncated or HTML answers, E-codes at a given
rate) and post delivery notifications (N101, N102, ...) to a postback URL.

Usage in a test::

    from skycore_async import SkycoreClient
    from skycore_async.testing import Emulator, EmulatorSettings

    async def test_send() -> None:
        async with Emulator() as emu:
            mms_id = emu.add_template(subject="Hello")
            async with SkycoreClient(api_key="test-key", base_url=emu.url) as client:
                result = await client.send_saved_mms(to="15551234567", mms_id=mms_id, from_="60856")
            assert [send.to for send in emu.accepted] == ["15551234567"]
            assert result.tracking_id == emu.accepted[0].tracking_id

Faults and postbacks::

    settings = EmulatorSettings(
        seed=1,
        drop_after_accept=0.05,  # the send happens, the client sees a dropped connection
        throughput={"sendSavedMMS": 100},  # E113 past 100 calls/s
        postback_url="http://127.0.0.1:8081/postbacks",  # N101 then N102 per accepted send
    )
    async with Emulator(settings) as emu:
        ...  # run the code under test against emu.url
        async with asyncio.timeout(5):
            await emu.wait_for_postbacks()
        assert emu.duplicate_recipients() == {}  # nobody got a message twice
        print(emu.answers)  # Counter({'Success': 950, 'E113': 40, 'DROP_AFTER_ACCEPT': 10})

Behaviour is set by :class:`EmulatorSettings`; its attributes may be changed while the emulator
runs, e.g. ``emu.settings.throughput["sendSavedMMS"] = 50`` or ``emu.settings.drop_after_accept
= 0.1``. Randomness (faults, postback outcomes, jitter) comes from one ``random.Random`` seeded
with ``settings.seed``, so a run with a seed and a fixed request order is reproducible.

From a shell: ``skycore-async emulator --port 8080`` (see :func:`serve`).

Order of checks for each request (the first that fails answers):

1. fault injection that precedes the API: ``drop_before_accept``, ``html_error_rate``;
2. decoding: E108 for malformed XML, E100 for anything else undecodable;
3. authentication: E102 (no ``API_KEY`` and no ``USER``), E103 (``USER`` without ``PASS``),
   E104 (unknown key, unknown user or wrong MD5);
4. E101 for an unknown action;
5. throttles: E120 (``quota``), E106 (``min_interval``), E113 (``throughput``);
6. :func:`~skycore_async.validation.validate_request` (its code, its message as ``ERRORINFO``);
7. ``error_rates`` (an injected code, e.g. E503);
8. the action: templates (E241, E626), campaign checks (E714, E718, E721, E715), blacklist
   (E114), then success, after which ``drop_after_accept`` / ``truncated_after_accept`` may
   still spoil the answer.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import random
import re
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal
from xml.parsers import expat
from xml.sax.saxutils import escape

import aiohttp
import attrs
from aiohttp import web

from .errors import ProtocolError, ValidationError, describe_code
from .fields import ACTIONS, ApiRequest, Dialect, canon_action, wire_name
from .notifications import Notification, encode_notification
from .protocol import decode_request
from .validation import normalize_number, validate_request

__all__ = [
    "API_PATH",
    "AcceptedSend",
    "Campaign",
    "Emulator",
    "EmulatorSettings",
    "Template",
    "serve",
]

#: The path of the real endpoint; the emulator also answers on ``/``.
API_PATH: Final = "/API/wxml/1.3/index.php"

PostbackDialect = Literal["skycore", "hyphenated", "legacy"]

#: How often a postback is attempted before it counts in ``Emulator.postback_failures``.
POSTBACK_ATTEMPTS: Final = 3
POSTBACK_RETRY_DELAY: Final = 0.05

_XML_HEADERS: Final = {"Content-Type": "text/xml; charset=utf-8"}
_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'
_ACCEPTED_DETAILS: Final = "MMS request accepted and queued for delivery"
_DTD: Final = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# Characters XML 1.0 cannot carry; echoed request text is cleaned of them.
_XML_BAD: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_OPERATORS: Final = ("0001570", "0001890", "0001000", "0001012")
_HANDSETS: Final = ("motol7c", "iphone12", "samsungs21")
_HTML_502: Final = (
    "<html><head><title>502 Bad Gateway</title></head><body>"
    "<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)

# ERRORINFO texts that the documentation gives verbatim; other codes use errors.describe_code.
_INFO: Final[dict[str, str]] = {
    "E113": "Set throughput exceeded for this API action. API call rejected.",
    "E114": "Phone number is blacklisted, call rejected",
    "E200": "No MMS Templates were created in this account.",
    "E626": "Content unavailable, encoding in progress, try again later",
    "E713": "There is billing problem on your account",
    "E714": "Missing/Invalid CampaignID",
    "E715": "Number is not subscribed in this campaign",
}


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability between 0 and 1, got {value}")


def _rates(_instance: object, attribute: attrs.Attribute[Any], value: Mapping[str, float]) -> None:
    for code, rate in value.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{attribute.name}[{code!r}] must be between 0 and 1, got {rate}")


@attrs.define(kw_only=True)
class EmulatorSettings:
    """How the emulator behaves. Mutable: tests may change any attribute while it runs.

    Attributes:
        api_keys: accepted ``API_KEY`` values.
        users: legacy accounts, user name to the MD5 hex of the password (what ``PASS``
            carries), e.g. ``{"demo": hashlib.md5(b"secret").hexdigest()}``.
        throughput: calls per second allowed per action (documented action names), e.g.
            ``{"sendSavedMMS": 200}``; past it the call gets E113. A token bucket refilling
            at that rate with capacity ``throughput_burst``; rejected calls consume nothing.
        throughput_burst: bucket capacity; default ``max(1, rate / 20)``.
        min_interval: account-wide minimum spacing in seconds between accepted calls (E106
            "You can call API every X seconds").
        quota: E120 once this many calls were accepted (passed the throttles).
        latency: seconds to wait before answering (without blocking the event loop).
        latency_jitter: extra random wait, uniform in ``[0, latency_jitter]``.
        error_rates: E-code to probability of answering that code instead of handling the
            request (nothing is recorded), e.g. ``{"E503": 0.05, "E618": 0.02}``.
        drop_before_accept: probability of closing the connection without an answer before
            anything happens (nothing recorded).
        drop_after_accept: probability of closing the connection without an answer after a
            successful call was recorded (the send happened, the client cannot know).
        truncated_after_accept: probability of answering only the first half of the XML
            reply after a successful call was recorded.
        html_error_rate: probability of answering HTTP 502 with an HTML page (nothing
            recorded), as a failing proxy would.
        enforce_campaign_check: the account's "Enforce Campaign Check": sends without
            ``CAMPAIGNREF`` get E718, an unknown reference E721, a recipient who is not a
            subscriber of that campaign E715. When off, ``CAMPAIGNREF`` is not checked.
        blacklist: numbers (international digits, e.g. ``"15551234567"``) that get E114.
        postback_url: where notifications are POSTed; None disables postbacks.
        postback_delay: seconds between the N101 and the final notification of a send.
        postback_dialect: ``"skycore"`` (flat ``<POSTBACK>``), ``"hyphenated"`` or
            ``"legacy"`` (``<NOTIFICATION>``), see :func:`~.notifications.encode_notification`.
        delivery_failure_rate: probability of an E102 ("Message Sent/Rejected") instead of N102.
        sms_fallback_rate: probability of delivery as SMS with a link: N101 with SENTAS SMS,
            then N202.
        postback_duplicates: probability that each notification is posted twice.
        postback_reorder: post the final notification before N101 for about half the sends.
        seed: seed of the emulator's random generator (None: unpredictable).
        encoding_delay: seconds a template saved with audio or video stays "encoding":
            sends of it get E626 until then, after which N003 is posted.
    """

    api_keys: set[str] = attrs.field(factory=lambda: {"test-key"})
    users: dict[str, str] = attrs.field(factory=dict)
    throughput: dict[str, float] = attrs.field(factory=dict)
    throughput_burst: float | None = None
    min_interval: float | None = None
    quota: int | None = None
    latency: float = 0.0
    latency_jitter: float = 0.0
    error_rates: dict[str, float] = attrs.field(factory=dict, validator=_rates)
    drop_before_accept: float = attrs.field(default=0.0, validator=_probability)
    drop_after_accept: float = attrs.field(default=0.0, validator=_probability)
    truncated_after_accept: float = attrs.field(default=0.0, validator=_probability)
    html_error_rate: float = attrs.field(default=0.0, validator=_probability)
    enforce_campaign_check: bool = False
    blacklist: set[str] = attrs.field(factory=set)
    postback_url: str | None = None
    postback_delay: float = 0.05
    postback_dialect: PostbackDialect = "skycore"
    delivery_failure_rate: float = attrs.field(default=0.0, validator=_probability)
    sms_fallback_rate: float = attrs.field(default=0.0, validator=_probability)
    postback_duplicates: float = attrs.field(default=0.0, validator=_probability)
    postback_reorder: bool = False
    seed: int | None = None
    encoding_delay: float = 0.0


@attrs.frozen(kw_only=True)
class AcceptedSend:
    """One message the emulator accepted (also when its answer was then dropped or truncated).

    Attributes:
        action: the API action, e.g. ``"sendSavedMMS"``, ``"sendSavedMMSCampaign"``,
            ``"sendMMS"``, ``"sendSMS"``.
        to: the recipient number.
        mms_id: the template sent (None for sendSMS).
        tracking_id: the id answered in ``TRACKINGID`` and carried by the postbacks.
        client_reference: the caller's ``CLIENT_REFERENCE``, if any.
        scheduled_id: the campaign send's ``SCHEDULEDID`` (campaign sends only).
        from_: the sender code, if the request named one.
        time: when it was accepted, on the ``time.monotonic()`` clock.
    """

    action: str
    to: str
    mms_id: str | None
    tracking_id: str
    client_reference: str | None = None
    scheduled_id: str | None = None
    from_: str | None = None
    time: float = 0.0


@attrs.frozen(kw_only=True)
class Template:
    """A saved MMS template.

    Attributes:
        mms_id: its id.
        subject: the subject.
        slides: how many slides it has.
        name: the internal name given to saveMMS/sendMMS.
        ready_at: ``time.monotonic()`` time when encoding ends (None: ready at once).
    """

    mms_id: str
    subject: str = "Demo"
    slides: int = 1
    name: str = ""
    ready_at: float | None = None

    def encoding(self, now: float) -> bool:
        """True while the template's audio/video is still being encoded (sends get E626)."""
        return self.ready_at is not None and now < self.ready_at


@attrs.frozen(kw_only=True)
class Campaign:
    """A subscription campaign.

    Attributes:
        campaign_id: the id sendSavedMMSCampaign names in ``TOCAMPAIGN``.
        subscribers: the subscribed numbers (international digits).
        campaign_ref: the reference sends name in ``CAMPAIGNREF``.
    """

    campaign_id: str
    subscribers: frozenset[str]
    campaign_ref: str


class _Reject(Exception):
    """Internal: answer this E-code (and stop handling the request)."""

    def __init__(self, code: str, info: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.info = info if info is not None else _INFO.get(code) or describe_code(code)


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


#: A planned postback: delay before it, Notification fields, how many copies to post.
_Step = tuple[float, dict[str, Any], int]


@attrs.frozen
class _Answer:
    """What one request gets: reply fields, dialect and the code counted in ``answers``."""

    fields: list[tuple[str, str]]
    dialect: Dialect
    code: str


def _encode_reply(fields: Iterable[tuple[str, str]], dialect: Dialect = "skycore") -> bytes:
    """A ``RESPONSE`` document; byte-for-byte what :func:`protocol.encode_response` writes.

    A string path, several times faster than xmltodict, for the emulator's hot loop.
    """
    root = wire_name("RESPONSE", dialect)
    parts = [_DECLARATION, "<", root, ">"]
    for name, value in fields:
        tag = wire_name(name, dialect)
        parts += ("<", tag, ">", escape(value), "</", tag, ">")
    parts += ("</", root, ">")
    return "".join(parts).replace("\r", "&#13;").encode("utf-8")


def _text(value: Any) -> str | None:
    """A field's text, stripped; None for absent, blank or non-text values."""
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def _chance(rng: random.Random, probability: float) -> bool:
    return probability > 0.0 and rng.random() < probability


def _id_key(value: str | int) -> str:
    """Numeric ids compare by value: ``"0042"`` and ``42`` name the same template."""
    text = str(value).strip()
    return str(int(text)) if text.isdecimal() else text


def _seconds(value: float) -> str:
    """Seconds as Skycore would print them: ``0.05``, ``2``, ``1.5``."""
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _xml_problem(xml: bytes) -> str | None:
    """Why ``xml`` is not well-formed, or None when it is."""
    if _DTD.search(xml):
        return "DTD and entity declarations are not allowed"
    parser = expat.ParserCreate()
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as exc:
        return str(exc)
    return None


def _xml_candidate(body: bytes, content_type: str) -> bytes | None:
    """The XML document a request carries (form field ``xml``/``XML`` or raw body), if any."""
    if body[:4].lower() == b"xml=" or "x-www-form-urlencoded" in content_type.lower():
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return None
        return next((v.encode("utf-8") for k, v in pairs if k.lower() == "xml"), None)
    return body if body.lstrip()[:1] == b"<" else None


def _decode_failure(body: bytes, content_type: str, exc: ProtocolError) -> _Reject:
    xml = _xml_candidate(body, content_type)
    problem = _xml_problem(xml) if xml is not None else None
    if problem is not None:
        return _Reject("E108", f"XML parse error: {problem}")
    return _Reject("E100", f"{describe_code('E100')} ({exc})")


def _request_to(body: bytes, content_type: str, request: web.Request) -> str | None:
    """The ``TO`` a request carries, or None when it has none or cannot be decoded."""
    try:
        decoded, _ = decode_request(
            body, content_type=content_type, query=list(request.query.items())
        )
    except ProtocolError:
        return None
    return _text(decoded.get("TO"))


def _has_audio_or_video(slides: Any) -> bool:
    items = slides if isinstance(slides, list) else [slides]
    return any(isinstance(s, Mapping) and (s.get("AUDIO") or s.get("VIDEO")) for s in items)


def _slide_count(slides: Any) -> int:
    return len(slides) if isinstance(slides, list) else int(isinstance(slides, Mapping))


def _pick(choices: tuple[str, ...], key: str) -> str:
    """A stable choice per key (``hash`` of a str changes between processes)."""
    return choices[zlib.crc32(key.encode("utf-8")) % len(choices)]


def _now() -> datetime:
    return datetime.now().astimezone()


class Emulator:
    """A running fake Skycore API. See the module docstring for an example.

    Attributes:
        settings: the behaviour; may be changed while running.
        app: the ``aiohttp.web.Application`` (POST and GET on ``/`` and on
            :data:`API_PATH`); usable with aiohttp's own test client instead of :meth:`start`.
        templates: saved templates by MMS id.
        campaigns: campaigns by campaign id.
        accepted: every message accepted, in order, including those whose answer was then
            dropped or truncated.
        requests_received: HTTP requests received.
        answers: how each request was answered: ``"Success"``, an E-code, or
            ``"DROP_BEFORE_ACCEPT"``, ``"DROP_AFTER_ACCEPT"``, ``"TRUNCATED"``, ``"HTML_502"``.
        faults: every request whose answer an injected fault spoiled, in order, as
            (that fault's name in ``answers``, the request's ``TO`` or None): what a client
            may rightly report as "unknown" (the ``*_AFTER_ACCEPT``/``TRUNCATED`` ones are
            also in ``accepted``).
        postbacks_sent: notifications posted successfully (a duplicate appears twice).
        postback_failures: notifications given up after :data:`POSTBACK_ATTEMPTS` attempts.
    """

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings if settings is not None else EmulatorSettings()
        self.templates: dict[str, Template] = {}
        self.campaigns: dict[str, Campaign] = {}
        self._mms_ids = itertools.count(35674)
        self._tracking = itertools.count(597879)
        self._scheduled = itertools.count(12346)
        self._notification_ids = itertools.count(325)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Callable[[ApiRequest], list[tuple[str, str]]]] = {
            "sendSavedMMS": self._send_saved_mms,
            "sendSavedMMSCampaign": self._send_saved_mms_campaign,
            "sendMMS": self._send_mms,
            "saveMMS": self._save_mms,
            "sendSMS": self._send_sms,
            "getMmsIds": self._get_mms_ids,
        }
        self.app = self._build_app()
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def _build_app(self) -> web.Application:
        app = web.Application()
        for path in ("/", API_PATH):
            app.router.add_post(path, self._handle)
            app.router.add_get(path, self._handle, allow_head=False)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: a free port) and return the base URL to give clients."""
        if self._runner is not None:
            raise RuntimeError("this Emulator is already running")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"http://{shown}:{bound_port}{API_PATH}"
        return self._url

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT/API/wxml/1.3/index.php``) once started."""
        if self._url is None:
            raise RuntimeError("the Emulator is not running; call start() or use async with")
        return self._url

    async def stop(self) -> None:
        """Stop listening, cancel pending postbacks and close the postback session."""
        runner, self._runner, self._url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _on_startup(self, _app: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=10, connect=10)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def _on_cleanup(self, _app: web.Application) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget what happened (records, counters, throttle state) and reseed the randomness.

        Templates and campaigns are kept. Postbacks already scheduled still go out.
        """
        self.accepted: list[AcceptedSend] = []
        self.requests_received = 0
        self.answers: collections.Counter[str] = collections.Counter()
        self.faults: list[tuple[str, str | None]] = []
        self.postbacks_sent: list[Notification] = []
        self.postback_failures = 0
        self._rng = random.Random(self.settings.seed)
        self._calls_accepted = 0
        self._last_call: float | None = None
        self._buckets: dict[str, _Bucket] = {}

    def add_template(
        self, mms_id: str | int | None = None, *, subject: str = "Demo", slides: int = 1
    ) -> str:
        """Preload a ready template and return its MMS id (a new one when ``mms_id`` is None)."""
        key = _id_key(mms_id) if mms_id is not None else self._new_mms_id()
        self.templates[key] = Template(mms_id=key, subject=subject, slides=slides)
        return key

    def add_campaign(
        self, campaign_id: str | int, subscribers: Iterable[str], campaign_ref: str | None = None
    ) -> Campaign:
        """Create a campaign; numbers are normalized (``"+1 555 123 4567"`` works).

        ``campaign_ref`` (what sends give as ``CAMPAIGNREF``) defaults to the campaign id.
        """
        key = _id_key(campaign_id)
        numbers = frozenset(normalize_number(number) for number in subscribers)
        ref = campaign_ref if campaign_ref is not None else key
        campaign = Campaign(campaign_id=key, subscribers=numbers, campaign_ref=ref)
        self.campaigns[key] = campaign
        return campaign

    def accepted_count_by_recipient(self) -> collections.Counter[str]:
        """How many messages were accepted for each number."""
        return collections.Counter(send.to for send in self.accepted)

    def duplicate_recipients(self) -> dict[str, int]:
        """Numbers that were accepted more than once, with their counts."""
        return {to: n for to, n in self.accepted_count_by_recipient().items() if n > 1}

    async def wait_for_postbacks(self) -> None:
        """Wait until every scheduled postback was posted or given up.

        Postbacks scheduled meanwhile are waited for too; bound it with ``asyncio.timeout``.
        """
        while pending := [task for task in self._tasks if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    def _new_mms_id(self) -> str:
        while (key := str(next(self._mms_ids))) in self.templates:
            pass
        return key

    def _new_tracking_id(self, kind: str) -> str:
        return base64.b64encode(f"{kind}_{next(self._tracking)}".encode("ascii")).decode("ascii")

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests_received += 1
        body, content_type = await self._read(request)
        settings, rng = self.settings, self._rng
        if _chance(rng, settings.drop_before_accept):
            self.faults.append(("DROP_BEFORE_ACCEPT", _request_to(body, content_type, request)))
            return await self._drop(request, "DROP_BEFORE_ACCEPT")
        if _chance(rng, settings.html_error_rate):
            self.faults.append(("HTML_502", _request_to(body, content_type, request)))
            await self._pause()
            self.answers["HTML_502"] += 1
            return web.Response(status=502, text=_HTML_502, content_type="text/html")
        answer = self._process(body, content_type, list(request.query.items()))
        if answer.code == "Success" and _chance(rng, settings.drop_after_accept):
            self.faults.append(("DROP_AFTER_ACCEPT", dict(answer.fields).get("TO")))
            return await self._drop(request, "DROP_AFTER_ACCEPT")
        payload = _encode_reply(answer.fields, answer.dialect)
        code = answer.code
        if code == "Success" and _chance(rng, settings.truncated_after_accept):
            payload, code = payload[: len(payload) // 2], "TRUNCATED"
            self.faults.append((code, dict(answer.fields).get("TO")))
        await self._pause()
        self.answers[code] += 1
        return web.Response(body=payload, headers=_XML_HEADERS)

    async def _read(self, request: web.Request) -> tuple[bytes, str]:
        """The body and its content type; a multipart form (the PHP SDK's) becomes raw XML."""
        content_type = request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return await request.read(), content_type
        form = await request.post()
        value = next((v for k, v in form.items() if k.lower() == "xml"), None)
        if isinstance(value, web.FileField):
            return value.file.read(), ""
        if isinstance(value, str):
            return value.encode("utf-8"), ""
        return bytes(value or b""), ""

    async def _pause(self) -> None:
        settings = self.settings
        delay = settings.latency
        if settings.latency_jitter > 0:
            delay += self._rng.uniform(0.0, settings.latency_jitter)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _drop(self, request: web.Request, outcome: str) -> web.StreamResponse:
        """Close the connection without answering: the client sees the server disconnect.

        ``force_close`` closes the transport and ends the keep-alive loop; the response
        returned afterwards is never written (aiohttp treats it as a client disconnect).
        """
        await self._pause()
        self.answers[outcome] += 1
        request.protocol.force_close()
        return web.Response(status=204)

    # ------------------------------------------------------------------ the API

    def _process(self, body: bytes, content_type: str, query: list[tuple[str, str]]) -> _Answer:
        """Decode, check and perform one call. Synchronous, so calls never interleave."""
        dialect: Dialect = "skycore"
        to: str | None = None
        try:
            try:
                request, dialect = decode_request(body, content_type=content_type, query=query)
            except ProtocolError as exc:
                raise _decode_failure(body, content_type, exc) from None
            to = _text(request.get("TO"))
            self._admit(request, dialect)
            return _Answer(self._perform(request), dialect, "Success")
        except _Reject as reject:
            fields = [("STATUS", "Failure"), ("ERRORCODE", reject.code)]
            if to is not None:
                fields.append(("TO", _XML_BAD.sub("\ufffd", to)))
            fields.append(("ERRORINFO", _XML_BAD.sub("\ufffd", reject.info)))
            return _Answer(fields, dialect, reject.code)

    def _admit(self, request: ApiRequest, dialect: Dialect) -> None:
        """Authentication, action, throttles, validation and injected errors."""
        self._authenticate(request)
        if request.action not in ACTIONS:
            info = f"Invalid action {request.action!r}" if request.action else None
            raise _Reject("E101", info)
        self._throttle(request.action, time.monotonic())
        try:
            validate_request(request, dialect)
        except ValidationError as exc:
            raise _Reject(exc.code, exc.message) from None
        for code, rate in self.settings.error_rates.items():
            if _chance(self._rng, rate):
                raise _Reject(code)

    def _authenticate(self, request: ApiRequest) -> None:
        key = _text(request.get("API_KEY"))
        if key is not None:
            if key not in self.settings.api_keys:
                raise _Reject("E104", "User authentication failed")
            return
        user = _text(request.get("USER"))
        if user is None:
            raise _Reject("E102")
        password = _text(request.get("PASS"))
        if password is None:
            raise _Reject("E103")
        expected = self.settings.users.get(user)
        if expected is None or expected.lower() != password.lower():
            raise _Reject("E104", "User authentication failed")

    def _throttle(self, action: str, now: float) -> None:
        """E120, E106, E113 in that order; a call that passes all three is counted."""
        settings = self.settings
        if settings.quota is not None and self._calls_accepted >= settings.quota:
            raise _Reject("E120")
        interval = settings.min_interval
        last = self._last_call
        if interval is not None and last is not None and now - last < interval:
            raise _Reject("E106", f"You can call API every {_seconds(interval)} seconds")
        rate = self._rate(action)
        if rate is not None:
            self._take_token(action, rate, now)
        self._calls_accepted += 1
        self._last_call = now

    def _rate(self, action: str) -> float | None:
        throughput = self.settings.throughput
        rate = throughput.get(action)
        if rate is None and throughput:
            rate = next((r for a, r in throughput.items() if canon_action(a) == action), None)
        return rate

    def _take_token(self, action: str, rate: float, now: float) -> None:
        burst = self.settings.throughput_burst
        capacity = burst if burst is not None else max(1.0, rate / 20.0)
        bucket = self._buckets.setdefault(action, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            raise _Reject("E113")
        bucket.tokens -= 1.0

    def _perform(self, request: ApiRequest) -> list[tuple[str, str]]:
        return self._handlers[request.action](request)

    def _template(self, request: ApiRequest) -> str:
        """The MMS id of a template that can be sent now (E241, E626 otherwise)."""
        key = _id_key(_text(request.get("MMSID")) or "")
        template = self.templates.get(key)
        if template is None:
            raise _Reject("E241")
        if template.encoding(time.monotonic()):
            raise _Reject("E626")
        return key

    def _recipients(self, request: ApiRequest) -> list[str]:
        """The numbers in ``TO`` after the campaign and blacklist checks."""
        numbers = [n.strip() for n in (_text(request.get("TO")) or "").split(",")]
        campaign = self._checked_campaign(request)
        for number in numbers:
            if campaign is not None and number not in campaign.subscribers:
                raise _Reject("E715")
            if number in self.settings.blacklist:
                raise _Reject("E114")
        return numbers

    def _checked_campaign(self, request: ApiRequest) -> Campaign | None:
        """With campaign checks enforced: the campaign ``CAMPAIGNREF`` names (E718, E721)."""
        if not self.settings.enforce_campaign_check:
            return None
        ref = _text(request.get("CAMPAIGNREF"))
        if ref is None:
            raise _Reject("E718")
        campaign = next((c for c in self.campaigns.values() if c.campaign_ref == ref), None)
        if campaign is None:
            raise _Reject("E721")
        return campaign

    def _accept(
        self, request: ApiRequest, to: str, mms_id: str | None, scheduled_id: str | None = None
    ) -> AcceptedSend:
        """Record one accepted message and schedule its postbacks."""
        kind = "SMS" if request.action == "sendSMS" else "MMS"
        send = AcceptedSend(
            action=request.action,
            to=to,
            mms_id=mms_id,
            tracking_id=self._new_tracking_id(kind),
            client_reference=_text(request.get("CLIENT_REFERENCE")),
            scheduled_id=scheduled_id,
            from_=_text(request.get("FROM")),
            time=time.monotonic(),
        )
        self.accepted.append(send)
        if self.settings.postback_url:
            self._schedule_delivery(send, _text(request.get("OPERATORID")))
        return send

    def _send_saved_mms(self, request: ApiRequest) -> list[tuple[str, str]]:
        mms_id = self._template(request)
        sends = [self._accept(request, to, mms_id) for to in self._recipients(request)]
        return [
            ("STATUS", "Success"),
            ("MMSID", mms_id),
            ("TRACKINGID", ",".join(send.tracking_id for send in sends)),
            ("TO", ",".join(send.to for send in sends)),
            ("FROM", _text(request.get("FROM")) or ""),
            ("STATUSDETAILS", _ACCEPTED_DETAILS),
        ]

    def _send_saved_mms_campaign(self, request: ApiRequest) -> list[tuple[str, str]]:
        mms_id = self._template(request)
        campaign = self.campaigns.get(_id_key(_text(request.get("TOCAMPAIGN")) or ""))
        if campaign is None:
            raise _Reject("E714")
        scheduled_id = str(next(self._scheduled))
        for number in sorted(campaign.subscribers - self.settings.blacklist):
            self._accept(request, number, mms_id, scheduled_id)
        return [("STATUS", "Success"), ("MMSID", mms_id), ("SCHEDULEDID", scheduled_id)]

    def _send_mms(self, request: ApiRequest) -> list[tuple[str, str]]:
        numbers = self._recipients(request)
        mms_id = self._save(request, encode=False)
        sends = [self._accept(request, to, mms_id) for to in numbers]
        return [
            ("STATUS", "Success"),
            ("TO", ",".join(send.to for send in sends)),
            ("MMSID", mms_id),
            ("TRACKINGID", ",".join(send.tracking_id for send in sends)),
            ("STATUSDETAILS", _ACCEPTED_DETAILS),
        ]

    def _save_mms(self, request: ApiRequest) -> list[tuple[str, str]]:
        return [("STATUS", "Success"), ("MMSID", self._save(request, encode=True))]

    def _save(self, request: ApiRequest, *, encode: bool) -> str:
        """Store the request's content as a template; audio/video makes it encode a while."""
        slides = request.get("SLIDE")
        delay = self.settings.encoding_delay if encode and _has_audio_or_video(slides) else 0.0
        template = Template(
            mms_id=self._new_mms_id(),
            subject=_text(request.get("SUBJECT")) or "",
            slides=_slide_count(slides),
            name=_text(request.get("NAME")) or "",
            ready_at=time.monotonic() + delay if delay > 0 else None,
        )
        self.templates[template.mms_id] = template
        if encode and self.settings.postback_url:
            self._schedule_encoded(template.mms_id, delay)
        return template.mms_id

    def _send_sms(self, request: ApiRequest) -> list[tuple[str, str]]:
        sends = [self._accept(request, to, None) for to in self._recipients(request)]
        return [
            ("STATUS", "Success"),
            ("TRACKINGID", ",".join(send.tracking_id for send in sends)),
            ("TO", ",".join(send.to for send in sends)),
        ]

    def _get_mms_ids(self, request: ApiRequest) -> list[tuple[str, str]]:
        if not self.templates:
            raise _Reject("E200")
        return [("STATUS", "Success"), ("MMSIDS", ",".join(self.templates))]

    # ------------------------------------------------------------------ postbacks

    def _schedule_delivery(self, send: AcceptedSend, operator_id: str | None) -> None:
        """Plan the notifications of one accepted message (all randomness drawn now)."""
        settings, rng = self.settings, self._rng
        base = {
            "tracking_id": send.tracking_id,
            "to": send.to,
            "from_": send.from_,
            "mms_id": send.mms_id,
            "scheduled_id": send.scheduled_id,
            "client_reference": send.client_reference,
            "operator_id": operator_id or _pick(_OPERATORS, send.to),
        }
        first, final = self._outcome(send, rng.random(), base)
        steps = [(0.0, first), (settings.postback_delay, final)]
        if settings.postback_reorder and rng.random() < 0.5:
            steps = [(settings.postback_delay, final), (0.0, first)]
        self._spawn(self._deliver(settings.postback_url or "", self._copies(steps)))

    def _outcome(
        self, send: AcceptedSend, draw: float, base: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The interim and the final notification of a message, as Notification fields."""
        settings = self.settings
        aggregator_id = f"11529-{zlib.crc32(send.tracking_id.encode()):08x}"
        if send.action == "sendSMS":
            sms = {**base, "origin": "SMS_MT", "mms_id": None, "status": "Message Sent"}
            delivered = {"status": "Message Sent/Delivered", "aggregator_id": aggregator_id}
            return {**sms, "code": "N201"}, {**sms, "code": "N202", **delivered}
        sent = {**base, "origin": "MMS_MT", "code": "N101", "sent_as": "MMS"}
        sent["status"] = "Message Sent"
        final = {**sent, "aggregator_id": aggregator_id}
        if draw < settings.delivery_failure_rate:
            final.update(code="E102", status="Message Sent/Rejected")
            final["status_details"] = "Recipient blocked by mobile operator"
        elif draw < settings.delivery_failure_rate + settings.sms_fallback_rate:
            sent.update(sent_as="SMS", status_details="Handset setting: mms via xHTML")
            final.update(code="N202", sent_as="SMS", mms_id=None)
            final["status"] = "Message Sent/Delivered"
        else:
            final.update(code="N102", handset=_pick(_HANDSETS, send.to))
            final["status"] = "Message Sent/Delivered"
        return sent, final

    def _schedule_encoded(self, mms_id: str, delay: float) -> None:
        """N003 once a saved template is stored (after encoding, for audio/video)."""
        steps = self._copies([(delay, {"origin": "MMS_MT", "code": "N003", "mms_id": mms_id})])
        self._spawn(self._deliver(self.settings.postback_url or "", steps))

    def _copies(self, steps: list[tuple[float, dict[str, Any]]]) -> list[_Step]:
        """Decide now (reproducibly) which notifications ``postback_duplicates`` doubles."""
        rate = self.settings.postback_duplicates
        return [(delay, fields, 2 if _chance(self._rng, rate) else 1) for delay, fields in steps]

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, steps: list[_Step]) -> None:
        """Post each planned notification after its delay (twice when duplicated)."""
        for delay, fields, count in steps:
            if delay > 0:
                await asyncio.sleep(delay)
            notification = self._notification(fields)
            for _ in range(count):
                await self._post(url, notification)

    def _notification(self, fields: dict[str, Any]) -> Notification:
        extra: dict[str, Any] = {"timestamp": _now()}
        if self.settings.postback_dialect == "legacy":
            extra["notification_id"] = str(next(self._notification_ids))
            extra["created"] = extra["timestamp"]
        return Notification(**fields, **extra)

    async def _post(self, url: str, notification: Notification) -> None:
        body = encode_notification(notification, self.settings.postback_dialect)
        for attempt in range(POSTBACK_ATTEMPTS):
            if await self._post_once(url, body):
                self.postbacks_sent.append(notification)
                return
            if attempt + 1 < POSTBACK_ATTEMPTS:
                await asyncio.sleep(POSTBACK_RETRY_DELAY * (attempt + 1))
        self.postback_failures += 1

    async def _post_once(self, url: str, body: bytes) -> bool:
        if self._session is None:
            return False
        try:
            async with self._session.post(url, data=body, headers=_XML_HEADERS) as response:
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False


async def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: EmulatorSettings | None = None,
    *,
    templates: Iterable[str] = (),
) -> None:
    """Run an emulator until cancelled, printing its URL (the ``skycore-async emulator`` CLI).

    ``templates`` are MMS ids to preload, so sendSavedMMS works straight away.
    """
    emulator = Emulator(settings)
    for mms_id in templates:
        emulator.add_template(mms_id)
    url = await emulator.start(host, port)
    print(f"Skycore emulator listening on {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()
