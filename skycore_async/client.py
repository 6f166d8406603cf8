"""``SkycoreClient``: the async client. One request pipeline serves every action.

Pipeline for each call: build the canonical request -> validate (no I/O yet) -> encode once ->
[throttle slot -> transport -> decode -> classify] repeated under the retry policy.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import ipaddress
import logging
import urllib.parse
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from .bulk import BulkMessage, BulkRun, RecipientInput
from .config import Limits, RetryPolicy, Timeouts
from .errors import (
    ClientStateError,
    QuotaExceededError,
    SkycoreError,
    ThrottledError,
    ValidationError,
)
from .fields import ApiRequest, Dialect, Method
from .models import (
    CampaignSendResult,
    CustomText,
    DynamicVCard,
    MmsIdsResult,
    SaveResult,
    SendResult,
    Slide,
)
from .outcomes import Progress
from .params import to_fields
from .protocol import (
    ApiResponse,
    decode_response,
    encode_form_body,
    encode_query,
    has_get_form,
    raise_for_failure,
)
from .retry import Decision, RetryEvent, decide
from .throttle import Throttle, ThrottleEvent, ThrottleLike
from .transport import FORM_HEADERS, AiohttpTransport, HttpRequest, Transport
from .validation import validate_request

__all__ = ["DEFAULT_BASE_URL", "SkycoreClient"]

log = logging.getLogger("skycore_async")

#: A hook run right before each attempt is written; it may return an awaitable to wait for.
BeforeSend = Callable[[], Awaitable[None] | None]

DEFAULT_BASE_URL: Final = "https://secure.skycore.com/API/wxml/1.3/index.php"

R = TypeVar("R")
CustomTextArg = str | Mapping[int, str] | Sequence[CustomText]


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@attrs.frozen
class _Credentials:
    api_key: str | None = attrs.field(default=None, repr=False)
    user: str | None = attrs.field(default=None, repr=False)
    pass_md5: str | None = attrs.field(default=None, repr=False)

    def fields(self) -> dict[str, str]:
        if self.api_key is not None:
            return {"API_KEY": self.api_key}
        return {"USER": self.user or "", "PASS": self.pass_md5 or ""}

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.pass_md5) if s)


def _credentials(
    api_key: str | None, user: str | None, password: str | None, password_md5: str | None
) -> _Credentials:
    if api_key is not None:
        if user is not None or password is not None or password_md5 is not None:
            raise ValueError("give either api_key or user with password, not both")
        if not api_key.strip():
            raise ValidationError("api_key", "E102", "api_key is empty")
        return _Credentials(api_key=api_key)
    if user is None or (password is None) == (password_md5 is None):
        raise ValueError("give api_key, or user with exactly one of password / password_md5")
    digest = password_md5 or hashlib.md5(password.encode("utf-8")).hexdigest()  # type: ignore[union-attr]
    return _Credentials(user=user, pass_md5=digest)


def _warn_if_plain_http(base_url: str) -> None:
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname or ""):
        warnings.warn(
            f"base_url {base_url!r} is plain http: the API key would travel unencrypted",
            stacklevel=3,
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SkycoreClient:
    """Async client for the Skycore MMS API; use as ``async with SkycoreClient(...) as client``.

    Args:
        api_key: the account's API key (or give ``user`` and ``password``/``password_md5``
            for the legacy USER/PASS authentication).
        base_url: the API endpoint (white-label hosts and the local emulator work too).
        dialect: ``"skycore"`` (1.3 upper-case XML) or ``"hyphenated"`` (lower-case
            hyphenated names; requires ``service_id`` and ``fallback_sms_text`` on sends).
        method: ``"xml"`` (POST, XML in form field ``xml``) or ``"get"`` (query parameters,
            for the actions that have a GET form; others still go as POST XML).
        timeouts: connect and read timeouts.
        limits: the shared throttle's rate, burst and concurrency settings.
        retry: the retry policy (attempts, deadline, backoff, ``retry_ambiguous``).
        transport: an alternative HTTP transport (e.g. ``MockTransport``) for tests.
        throttle: a throttle to use instead of one built from ``limits``: share one
            between clients of the same account, or pass ``Throttle.testing()`` for
            zero waits in tests.
        on_throttle: called with a frozen snapshot whenever a throttle code pauses senders.
        on_retry: called with a frozen snapshot before each retry.

    The API key never appears in ``repr``, in log lines or in exception messages.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        user: str | None = None,
        password: str | None = None,
        password_md5: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        dialect: Dialect = "skycore",
        method: Method = "xml",
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
        throttle: ThrottleLike | None = None,
        on_throttle: Callable[[ThrottleEvent], None] | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        if dialect not in ("skycore", "hyphenated"):
            raise ValueError(f"dialect must be 'skycore' or 'hyphenated', got {dialect!r}")
        if method not in ("xml", "get"):
            raise ValueError(f"method must be 'xml' or 'get', got {method!r}")
        _warn_if_plain_http(base_url)
        self._credentials = _credentials(api_key, user, password, password_md5)
        self._base_url = base_url
        self._dialect: Dialect = dialect
        self._method: Method = method
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        if throttle is not None and (limits is not None or on_throttle is not None):
            raise ValueError("give limits/on_throttle, or a ready throttle, not both")
        self._throttle: ThrottleLike = throttle or Throttle(
            limits or Limits(), on_throttle=on_throttle
        )
        self._limits = self._throttle.limits
        self._transport: Transport = transport or AiohttpTransport(
            pool_size=max(self._limits.concurrency, 10)
        )
        self._on_retry = on_retry
        self._state = _State.UNOPENED
        self._owns_transport = True

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        auth = "api_key='***'" if self._credentials.api_key else "user='***', pass='***'"
        return (
            f"<SkycoreClient {auth} base_url={self._base_url!r} dialect={self._dialect!r} "
            f"method={self._method!r} state={self._state.value}>"
        )

    async def __aenter__(self) -> SkycoreClient:
        if self._state is _State.CLOSED:
            raise ClientStateError("this SkycoreClient was closed; create a new one")
        if self._state is _State.OPENED:
            raise ClientStateError("this SkycoreClient is already open")
        self._state = _State.OPENED
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session. Idempotent; a closed client cannot be reopened."""
        if self._state is not _State.CLOSED and self._owns_transport:
            await self._transport.aclose()
        self._state = _State.CLOSED

    def with_options(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> SkycoreClient:
        """A view of this client with other retry/timeout settings, for one call or many.

        The copy shares the session and the throttle (so it stays inside the same account
        limits) and does not close them.
        """
        clone = object.__new__(SkycoreClient)
        clone.__dict__.update(self.__dict__)
        clone._retry = retry or self._retry
        clone._timeouts = timeouts or self._timeouts
        clone._owns_transport = False
        return clone

    @property
    def throttle(self) -> ThrottleLike:
        """The shared throttle (its ``stats`` give sent/throttled/retried and rates)."""
        return self._throttle

    @property
    def dialect(self) -> Dialect:
        """The XML dialect this client speaks."""
        return self._dialect

    @property
    def base_url(self) -> str:
        """The API endpoint."""
        return self._base_url

    @property
    def limits(self) -> Limits:
        """The throttle settings in force."""
        return self._limits

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    @property
    def uses_post_xml(self) -> bool:
        """True when sendSavedMMS travels as POST XML (the bulk engine's template path)."""
        return self._method == "xml"

    # ------------------------------------------------------------------ actions

    async def send_saved_mms(
        self,
        *,
        to: str,
        mms_id: int | str,
        from_: str,
        from_mask: str | None = None,
        operator_id: str | None = None,
        campaign_ref: str | int | None = None,
        ddm_title: str | None = None,
        ddm_text: str | None = None,
        ddm_timeout: int | None = None,
        ddm_force: bool | None = None,
        custom_text: CustomTextArg | None = None,
        custom_subject: str | None = None,
        data: Mapping[str, str | int | float] | None = None,
        fallback_sms_text: str | None = None,
        disable_fallback_sms: bool | None = None,
        disable_fallback_sms_link: bool | None = None,
        force_send_as_sms: bool | None = None,
        force_pass_as_link: bool | None = None,
        client_reference: str | None = None,
        dynamic_vcard: DynamicVCard | None = None,
        service_id: str | None = None,
    ) -> SendResult:
        """Send a saved MMS template to one recipient (``sendSavedMMS``).

        Args:
            to: recipient in international format; spaces, dashes, parentheses and a
                leading ``+``/``00``/``011`` are stripped.
            mms_id: the saved template's id.
            from_: sender short code, long code or toll-free number.
            custom_text: text replacing a slide's text: a string (slide 1), a mapping
                slide number -> text, or ``CustomText`` values.
            data: merge-tag values for ``{$name|default}`` placeholders and personalised
                images.
            client_reference: your own id (at most 64 characters), echoed in postbacks.
            (the other keywords map one-to-one to the documented fields)

        Returns:
            SendResult with the ``tracking_id`` that delivery postbacks refer to.

        Raises:
            ValidationError: before any I/O, for input Skycore would reject.
            ApiError: a subclass chosen by the E-code Skycore answered.
            OutcomeUnknownError: the request went out but no answer came (not retried).
        """
        reply, attempts = await self._call("sendSavedMMS", to_fields("sendSavedMMS", locals()))
        return SendResult.from_reply(reply, attempts)

    async def send_saved_mms_campaign(
        self, *, mms_id: int | str, to_campaign: int | str
    ) -> CampaignSendResult:
        """Send a saved template to every subscriber of a campaign (``sendSavedMMSCampaign``).

        Returns:
            CampaignSendResult with the ``scheduled_id`` of the whole campaign send.
        """
        fields = to_fields("sendSavedMMSCampaign", locals())
        reply, attempts = await self._call("sendSavedMMSCampaign", fields)
        return CampaignSendResult.from_reply(reply, attempts)

    async def send_mms(
        self,
        *,
        to: str,
        from_: str,
        name: str,
        slides: Sequence[Slide],
        subject: str | None = None,
        from_mask: str | None = None,
        operator_id: str | None = None,
        campaign_ref: str | int | None = None,
        fallback_sms_text: str | None = None,
        disable_fallback_sms_link: bool | None = None,
        service_id: str | None = None,
        legacy_layout: bool = False,
    ) -> SendResult:
        """Send an MMS whose slides are given inline (``sendMMS``; dedicated short codes only).

        Args:
            slides: 1 to 8 ``Slide`` values, sent in order.
            name: the internal name the content is saved under.
            subject: at most 80 characters, no emoji; without it, ``fallback_sms_text`` is
                required.
            legacy_layout: write the 2014 ``CONTENT/SEQUENCE/SLIDE duration=`` form (as
                used with USER/PASS accounts) instead of flat ``SLIDE`` elements.

        Returns:
            SendResult with ``tracking_id`` and the ``mms_id`` the content was saved as.
        """
        fields = to_fields("sendMMS", locals())
        reply, attempts = await self._call("sendMMS", fields, legacy=legacy_layout)
        return SendResult.from_reply(reply, attempts)

    async def save_mms(
        self,
        *,
        name: str,
        subject: str,
        slides: Sequence[Slide],
        legacy_layout: bool = False,
    ) -> SaveResult:
        """Store an MMS template (``saveMMS``) and return its ``mms_id``.

        Templates with audio or video are encoded first: sending them before the N003
        postback answers E626 (a retryable ``ServerError``).
        """
        fields = to_fields("saveMMS", locals())
        reply, attempts = await self._call("saveMMS", fields, legacy=legacy_layout)
        return SaveResult.from_reply(reply, attempts)

    async def send_sms(
        self,
        *,
        to: str,
        from_: str,
        text: str,
        from_mask: str | None = None,
        operator_id: str | None = None,
        campaign_ref: str | int | None = None,
    ) -> SendResult:
        """Send a plain SMS (``sendSMS``); keep ``text`` within 160 characters to avoid splits."""
        reply, attempts = await self._call("sendSMS", to_fields("sendSMS", locals()))
        return SendResult.from_reply(reply, attempts)

    async def get_mms_ids(self) -> MmsIdsResult:
        """List the account's saved template ids (``getMmsIds``)."""
        reply, attempts = await self._call("getMmsIds", {})
        return MmsIdsResult.from_reply(reply, attempts)

    def send_bulk(
        self,
        message: BulkMessage,
        recipients: RecipientInput,
        *,
        journal: str | Path | None = None,
        resume: bool = False,
        resend_unknown: bool = False,
        dedupe: bool = True,
        batch_size: int = 500,
        batch_interval: float = 1.0,
        concurrency: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 1.0,
        total: int | None = None,
        fsync: bool = False,
    ) -> BulkRun:
        """Send ``message`` to every recipient, streaming, through this client's throttle.

        Use as ``async with client.send_bulk(msg, recipients) as run: async for batch in run``.

        Args:
            message: the saved template and shared fields (``BulkMessage.saved_mms(...)``).
            recipients: any iterable or async iterable of numbers, ``Recipient`` values or
                ``RowError`` values (from ``read_csv``/``read_jsonl``); read lazily.
            journal: path of the write-ahead journal that makes the run resumable.
            resume: continue the run recorded in ``journal`` (same message and input).
            resend_unknown: on resume, resend recipients whose earlier send may have been
                accepted (at-least-once); by default they are reported ``unknown``.
            dedupe: send each distinct number once; later duplicates are ``skipped``.
            batch_size: outcomes per ``ResultBatch`` (a batch is also flushed every
                ``batch_interval`` seconds).
            concurrency: worker count (default: ``limits.concurrency``).
            on_progress: called with a ``Progress`` snapshot every ``progress_interval`` s.
            total: the number of recipients, for progress and ETA (taken from ``len()``
                when the input has one).
            fsync: fsync the journal on every write (survives power loss; slower).

        Raises (from the ``async for``):
            ApiError: a campaign-fatal error (authentication, billing, quota, IP not
                allowed), after every in-flight outcome was flushed and delivered.
            ValidationError: the shared message is invalid (raised on entering the block).
        """
        return BulkRun(
            self,
            message,
            recipients,
            journal=journal,
            resume=resume,
            resend_unknown=resend_unknown,
            dedupe=dedupe,
            batch_size=batch_size,
            batch_interval=batch_interval,
            concurrency=concurrency,
            on_progress=on_progress,
            progress_interval=progress_interval,
            total=total,
            fsync=fsync,
        )

    # ------------------------------------------------------------------ pipeline

    def build_request(
        self, action: str, fields: Mapping[str, Any], *, legacy: bool = False
    ) -> ApiRequest:
        """The canonical request with credentials, dropping unset fields. Pure."""
        present = {k: v for k, v in fields.items() if v is not None}
        return ApiRequest(action, {**self._credentials.fields(), **present}, legacy_content=legacy)

    def encode(self, request: ApiRequest) -> HttpRequest:
        """The HTTP request for ``request`` in this client's dialect and method. Pure."""
        if self._method == "get" and has_get_form(request):
            query = urllib.parse.urlencode(encode_query(request, self._dialect))
            separator = "&" if "?" in self._base_url else "?"
            return HttpRequest("GET", f"{self._base_url}{separator}{query}", action=request.action)
        return HttpRequest(
            "POST",
            self._base_url,
            body=encode_form_body(request, self._dialect),
            headers=FORM_HEADERS,
            action=request.action,
        )

    async def _call(
        self, action: str, fields: Mapping[str, Any], *, legacy: bool = False
    ) -> tuple[ApiResponse, int]:
        self._check_open()
        request = self.build_request(action, fields, legacy=legacy)
        validate_request(request, self._dialect)
        return await self.execute(self.encode(request))

    def _check_open(self) -> None:
        if self._state is _State.CLOSED:
            raise ClientStateError("this SkycoreClient is closed; create a new one")
        self._state = _State.OPENED

    async def execute(
        self, http: HttpRequest, *, before_send: BeforeSend | None = None
    ) -> tuple[ApiResponse, int]:
        """Send an encoded request under the throttle and the retry policy.

        ``before_send`` runs inside the throttle slot right before each attempt is written
        (the bulk engine records its write-ahead claim there); when it returns an awaitable
        (a claim in a shared store), the attempt waits for it, and does not start if it fails.

        Returns the successful reply and the number of attempts; raises the last error
        (with ``error.attempts`` set) when the policy gives up.
        """
        # The common case first: a call the throttle lets go at once, one attempt, no
        # bookkeeping. This is _attempt's body with the throttle's synchronous fast path in
        # place of its slot (no coroutines for the context manager); keep the two in step.
        throttle = self._throttle
        granted = throttle.enter_now(http.action)
        try:
            if granted is None:
                reply = await self._attempt(http, before_send)
                return reply, 1
            try:
                if before_send is not None and (claiming := before_send()) is not None:
                    await claiming
                response = await self._transport.send(
                    http, connect_timeout=self._timeouts.connect, read_timeout=self._timeouts.read
                )
            finally:
                throttle.leave(granted)
            reply = raise_for_failure(decode_response(response.body, status=response.status))
        except SkycoreError as error:
            return await self._retry_after(http, before_send, error)
        throttle.on_success(http.action)
        return reply, 1

    async def _retry_after(
        self, http: HttpRequest, before_send: BeforeSend | None, error: SkycoreError
    ) -> tuple[ApiResponse, int]:
        """The retry loop, entered after a first failed attempt."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        errors = throttles = quota_retries = 0
        while True:
            error.attempts = errors + throttles + 1
            pause = 0.0
            if isinstance(error, ThrottledError):
                pause = self._throttle.on_throttled(http.action, error)
            decision = decide(
                error,
                attempt=errors + 1,
                throttle_attempt=throttles + 1,
                elapsed=loop.time() - started,
                policy=self._retry,
                pause=pause,
                quota_retry=self._limits.quota_cooldown is not None and quota_retries == 0,
            )
            if not decision.retry:
                raise error
            if isinstance(error, QuotaExceededError):
                quota_retries += 1
            if decision.kind == "throttle":
                throttles += 1
            else:
                errors += 1
            self._notify_retry(http.action, error, decision, pause)
            if decision.wait > 0:
                await asyncio.sleep(decision.wait)
            try:
                return await self._attempt(http, before_send), errors + throttles + 1
            except SkycoreError as next_error:
                error = next_error

    async def _attempt(self, http: HttpRequest, before_send: BeforeSend | None) -> ApiResponse:
        async with self._throttle.slot(http.action):
            if before_send is not None and (claiming := before_send()) is not None:
                await claiming
            response = await self._transport.send(
                http, connect_timeout=self._timeouts.connect, read_timeout=self._timeouts.read
            )
        reply = raise_for_failure(decode_response(response.body, status=response.status))
        self._throttle.on_success(http.action)
        return reply

    def _notify_retry(
        self, action: str, error: SkycoreError, decision: Decision, pause: float
    ) -> None:
        self._throttle.on_retry(action)
        log.debug(
            "retrying %s after %s (%s), wait %.3fs, attempt %d",
            action, type(error).__name__, decision.reason, decision.wait, error.attempts,
        )  # fmt: skip
        if self._on_retry is not None:
            event = RetryEvent.from_decision(
                decision, error, action=action, attempt=error.attempts,
                rate=self._throttle.current_rate(action), pause=pause,
            )  # fmt: skip
            self._on_retry(event)
