"""SkycoreClient through its public API: every action, both dialects, both methods."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import warnings
from typing import Any

import pytest

from skycore_async import (
    ApiError,
    AuthenticationError,
    ClientStateError,
    ConnectError,
    ConnectionLostError,
    CustomText,
    DynamicVCard,
    InvalidRequestError,
    LabeledValue,
    MockTransport,
    ProtocolError,
    RecipientError,
    ResponseTimeoutError,
    RetryPolicy,
    ServerError,
    SkycoreClient,
    Slide,
    Throttle,
    Timeouts,
    ValidationError,
)
from skycore_async.errors import CODE_TABLE
from skycore_async.testing import Emulator
from skycore_async.transport import HttpRequest, HttpResponse

API_KEY = "test-key"

MODES = [("skycore", "xml"), ("skycore", "get"), ("hyphenated", "xml"), ("hyphenated", "get")]


def make_client(emulator: Emulator, **kwargs: Any) -> SkycoreClient:
    """A test-mode client against the emulator."""
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": emulator.url,
        "retry": RetryPolicy.testing(),
        "throttle": Throttle.testing(),
    }
    options.update(kwargs)
    return SkycoreClient(**options)


def dialect_extras(dialect: str) -> dict[str, Any]:
    """The fields the hyphenated dialect makes mandatory on sends."""
    return {"service_id": "77", "fallback_sms_text": "See it"} if dialect == "hyphenated" else {}


@pytest.mark.parametrize(("dialect", "method"), MODES)
async def test_send_saved_mms_every_field(emulator: Emulator, dialect: str, method: str) -> None:
    """A send with every documented field is accepted and its tracking id is the emulator's."""
    async with make_client(emulator, dialect=dialect, method=method) as client:
        result = await client.send_saved_mms(
            to="+1 (650) 123-4123",
            mms_id=35674,
            from_="60856",
            from_mask="Brand",
            operator_id="0001570",
            campaign_ref=12333,
            ddm_title="Device Discovery",
            ddm_text="Hello",
            ddm_timeout=5,
            ddm_force=True,
            custom_text={1: 'Hi <there> & "you"', 2: "Line one\nLine two"},
            custom_subject="Your offer",
            data={"first_name": "Zoë", "age": 30},
            disable_fallback_sms=False,
            disable_fallback_sms_link=True,
            force_send_as_sms=False,
            force_pass_as_link=True,
            client_reference="order-123",
            **dialect_extras(dialect),
        )
    assert result.tracking_id
    (accepted,) = emulator.accepted
    assert accepted.to == "16501234123" == result.to
    assert accepted.tracking_id == result.tracking_id
    assert accepted.client_reference == "order-123"
    assert result.mms_id == "35674"
    assert result.status_details


@pytest.mark.parametrize(("dialect", "method"), MODES)
async def test_dynamic_vcard_send(emulator: Emulator, dialect: str, method: str) -> None:
    """A dynamic vCard (no GET mapping) goes as POST XML even on a GET client."""
    card = DynamicVCard(
        first_name="John",
        last_name="Smith",
        phones=[LabeledValue("+1 650 555 0100", "work")],
        emails=[LabeledValue("john@example.com", "home")],
        photo_url="https://example.com/p.png",
    )
    async with make_client(emulator, dialect=dialect, method=method) as client:
        result = await client.send_saved_mms(
            to="16501234123",
            mms_id=35674,
            from_="60856",
            dynamic_vcard=card,
            **dialect_extras(dialect),
        )
    assert result.tracking_id == emulator.accepted[0].tracking_id


@pytest.mark.parametrize(("dialect", "method"), MODES)
async def test_campaign_send(emulator: Emulator, dialect: str, method: str) -> None:
    """sendSavedMMSCampaign returns a scheduled id; every subscriber is sent once."""
    emulator.add_campaign(332, ["16501110001", "16501110002"])
    async with make_client(emulator, dialect=dialect, method=method) as client:
        result = await client.send_saved_mms_campaign(mms_id=35674, to_campaign=332)
    assert result.scheduled_id
    assert sorted(a.to for a in emulator.accepted) == ["16501110001", "16501110002"]
    assert {a.scheduled_id for a in emulator.accepted} == {result.scheduled_id}


@pytest.mark.parametrize(("dialect", "method"), MODES)
async def test_save_then_send_then_list(emulator: Emulator, dialect: str, method: str) -> None:
    """saveMMS stores a template that sendSavedMMS can send and getMmsIds lists."""
    slides = [
        Slide(text="Hello {$first_name|there}", image="https://example.com/a.png", duration=5)
    ]
    async with make_client(emulator, dialect=dialect, method=method) as client:
        saved = await client.save_mms(name="spring", subject="Spring sale", slides=slides)
        sent = await client.send_saved_mms(
            to="16501234123", mms_id=saved.mms_id, from_="60856", **dialect_extras(dialect)
        )
        listed = await client.get_mms_ids()
    assert saved.mms_id in listed.mms_ids
    assert emulator.accepted[0].mms_id == saved.mms_id == sent.mms_id


@pytest.mark.parametrize(("dialect", "method"), MODES)
async def test_send_mms_inline_slides(emulator: Emulator, dialect: str, method: str) -> None:
    """sendMMS with inline slides returns a tracking id and the id it saved the content as."""
    slides = [
        Slide(text="Look", image="https://example.com/a.png", audio="https://example.com/a.mp3"),
        Slide(vcard="https://example.com/c.vcf"),
    ]
    async with make_client(emulator, dialect=dialect, method=method) as client:
        result = await client.send_mms(
            to="16501234123",
            from_="60856",
            name="inline",
            subject="Hi",
            slides=slides,
            **dialect_extras(dialect),
        )
    assert result.tracking_id == emulator.accepted[0].tracking_id
    assert result.mms_id in emulator.templates


async def test_send_mms_legacy_layout_with_user_and_password(emulator: Emulator) -> None:
    """The 2014 CONTENT/SEQUENCE form authenticates with USER and the MD5 of the password."""
    emulator.settings.users["legacy"] = hashlib.md5(b"s3cret").hexdigest()
    async with make_client(emulator, api_key=None, user="legacy", password="s3cret") as client:
        result = await client.send_mms(
            to="15551234888",
            from_="60856",
            name="fishtank",
            subject="Fish",
            slides=[Slide(text="Hi", image="https://example.com/1.jpg", duration=5)],
            legacy_layout=True,
        )
    assert result.tracking_id == emulator.accepted[0].tracking_id


@pytest.mark.parametrize(("dialect", "method"), MODES)
async def test_send_sms(emulator: Emulator, dialect: str, method: str) -> None:
    """sendSMS returns the SMS tracking id."""
    async with make_client(emulator, dialect=dialect, method=method) as client:
        result = await client.send_sms(to="16501234123", from_="60856", text="Hello & bye")
    assert result.tracking_id == emulator.accepted[0].tracking_id


async def test_wrong_key_is_an_authentication_error(emulator: Emulator) -> None:
    """E104 from the server is a fatal AuthenticationError, and its message hides the key."""
    async with make_client(emulator, api_key="wrong-key-123") as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.get_mms_ids()
    assert caught.value.code == "E104"
    assert caught.value.fatal
    assert "wrong-key-123" not in str(caught.value)


async def test_unknown_template_and_blacklist(client: SkycoreClient, emulator: Emulator) -> None:
    """E241 is an InvalidRequestError; a blacklisted number is a RecipientError with its TO."""
    with pytest.raises(InvalidRequestError, match="E241"):
        await client.send_saved_mms(to="16501234123", mms_id=999, from_="60856")
    emulator.settings.blacklist.add("16505550000")
    with pytest.raises(RecipientError) as caught:
        await client.send_saved_mms(to="16505550000", mms_id=35674, from_="60856")
    assert caught.value.code == "E114"
    assert caught.value.to == "16505550000"


@pytest.mark.parametrize("code", sorted(CODE_TABLE))
async def test_every_code_maps_to_its_class(code: str) -> None:
    """Every E-code in the table raises its class through the client (one table, one place)."""
    body = f"<RESPONSE><STATUS>Failure</STATUS><ERRORCODE>{code}</ERRORCODE><ERRORINFO>x 2 seconds</ERRORINFO></RESPONSE>"
    transport = MockTransport(lambda _request: HttpResponse(200, body.encode()))
    policy = RetryPolicy.testing(attempts=1, throttle_attempts=1)
    async with SkycoreClient(
        api_key="k", transport=transport, retry=policy, throttle=Throttle.testing()
    ) as client:
        with pytest.raises(ApiError) as caught:
            await client.get_mms_ids()
    assert type(caught.value) is CODE_TABLE[code][0]
    assert caught.value.code == code


async def test_unknown_code_falls_back_to_api_error() -> None:
    """A code the table does not know is a plain ApiError, not retried."""
    body = b"<RESPONSE><STATUS>Failure</STATUS><ERRORCODE>E4242</ERRORCODE></RESPONSE>"
    transport = MockTransport(lambda _request: HttpResponse(200, body))
    async with SkycoreClient(
        api_key="k", transport=transport, retry=RetryPolicy.testing(), throttle=Throttle.testing()
    ) as client:
        with pytest.raises(ApiError) as caught:
            await client.get_mms_ids()
    assert type(caught.value) is ApiError
    assert len(transport.requests) == 1


@pytest.mark.parametrize("keep", [0, 2, None])
async def test_mock_transport_keeps_only_the_last_requests(keep: int | None) -> None:
    """MockTransport(keep=N) holds the N newest requests, oldest first; count sees them all."""
    body = b"<RESPONSE><STATUS>Success</STATUS><TRACKINGID>MMS_1</TRACKINGID></RESPONSE>"
    transport = MockTransport(lambda _request: HttpResponse(200, body), keep=keep)
    numbers = [f"1650123450{n}" for n in range(5)]
    async with SkycoreClient(
        api_key="k", transport=transport, retry=RetryPolicy.testing(), throttle=Throttle.testing()
    ) as client:
        for number in numbers:
            await client.send_saved_mms(to=number, mms_id=35674, from_="60856")
    kept = numbers if keep is None else numbers[len(numbers) - keep :]
    assert transport.count == 5
    assert [next(n for n in numbers if n.encode() in r.body) for r in transport.requests] == kept


def test_mock_transport_refuses_a_negative_keep() -> None:
    with pytest.raises(ValueError, match="keep"):
        MockTransport(lambda _request: HttpResponse(200, b""), keep=-1)


def _refuse(request: HttpRequest) -> HttpResponse:
    raise AssertionError("invalid input reached the network")


BAD_SENDS: list[tuple[dict[str, Any], str, str]] = [
    ({"to": "12"}, "to", "E110"),
    ({"to": "+1 650 ABC"}, "to", "E110"),
    ({"mms_id": "abc"}, "mms_id", "E625"),
    ({"from_": ""}, "from_", "E111"),
    ({"client_reference": "x" * 65}, "client_reference", "E100"),
    ({"custom_subject": "x" * 81}, "custom_subject", "E228"),
    ({"custom_subject": "Party 🎉"}, "custom_subject", "E229"),
    ({"custom_text": [CustomText(slide=0, value="x")]}, "custom_text[0].slide", "E100"),
    ({"ddm_timeout": -1}, "ddm_timeout", "E100"),
    ({"data": {"1bad": "x"}}, "data", "E108"),
    ({"dynamic_vcard": DynamicVCard()}, "dynamic_vcard", "E1501"),
    (
        {
            "dynamic_vcard": DynamicVCard(
                first_name="J", phones=[LabeledValue("+1 650 555 0100", "mobile")]
            )
        },
        "dynamic_vcard.phone[0]",
        "E1516",
    ),
    (
        {"dynamic_vcard": DynamicVCard(first_name="J", photo_url="https://x.test/a.bmp")},
        "dynamic_vcard.photo_url",
        "E1502",
    ),
    (
        {
            "dynamic_vcard": DynamicVCard(
                first_name="J", emails=[LabeledValue(f"a{i}@b.co") for i in range(5)]
            )
        },
        "dynamic_vcard.email",
        "E1508",
    ),
    ({"fallback_sms_text": "bad \x01 char"}, "fallback_sms_text", "E108"),
]


@pytest.mark.parametrize(("changes", "field", "code"), BAD_SENDS)
async def test_bad_input_never_reaches_the_network(
    changes: dict[str, Any], field: str, code: str
) -> None:
    """Invalid arguments raise ValidationError naming the field and the server's code, with no I/O."""
    transport = MockTransport(_refuse)
    arguments: dict[str, Any] = {"to": "16501234123", "mms_id": 1, "from_": "60856", **changes}
    async with SkycoreClient(api_key="k", transport=transport) as client:
        with pytest.raises(ValidationError) as caught:
            await client.send_saved_mms(**arguments)
    assert caught.value.field.startswith(field)
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)
    assert caught.value.attempts == 0  # caught before any request
    assert transport.requests == []


BAD_OTHER: list[tuple[str, dict[str, Any], str]] = [
    ("send_mms", {"to": "16501234123", "from_": "1", "name": "n", "slides": []}, "E312"),
    (
        "send_mms",
        {
            "to": "16501234123",
            "from_": "1",
            "name": "n",
            "slides": [Slide(text="x")] * 9,
            "subject": "s",
        },
        "E225",
    ),
    (
        "send_mms",
        {
            "to": "16501234123",
            "from_": "1",
            "name": "n",
            "slides": [Slide(image="https://x.test/a.png", video="https://x.test/a.mp4")],
            "subject": "s",
        },
        "E227",
    ),
    (
        "send_mms",
        {
            "to": "16501234123",
            "from_": "1",
            "name": "n",
            "slides": [Slide(audio="https://x.test/a.mp3", video="https://x.test/a.mp4")],
            "subject": "s",
        },
        "E226",
    ),
    (
        "send_mms",
        {
            "to": "16501234123",
            "from_": "1",
            "name": "n",
            "slides": [Slide(vcard="https://x.test/a.vcf", pdf="https://x.test/a.pdf")],
            "subject": "s",
        },
        "E223",
    ),
    (
        "send_mms",
        {
            "to": "16501234123",
            "from_": "1",
            "name": "n",
            "slides": [Slide(vcard="https://x.test/a.vcf", image="https://x.test/a.png")],
            "subject": "s",
        },
        "E224",
    ),
    (
        "send_mms",
        {
            "to": "16501234123",
            "from_": "1",
            "name": "n",
            "slides": [Slide(text="x", duration=90)],
            "subject": "s",
        },
        "E230",
    ),
    (
        "send_mms",
        {"to": "16501234123", "from_": "1", "name": "n", "slides": [Slide(text="x")]},
        "E622",
    ),
    ("save_mms", {"name": "n", "subject": "", "slides": [Slide(text="x")]}, "E314"),
    ("save_mms", {"name": "", "subject": "s", "slides": [Slide(text="x")]}, "E311"),
    ("save_mms", {"name": "n", "subject": "s", "slides": [Slide()]}, "E313"),
    ("save_mms", {"name": "n", "subject": "s", "slides": [Slide(text="x" * 5001)]}, "E228"),
    ("send_sms", {"to": "16501234123", "from_": "1", "text": ""}, "E712"),
    ("send_saved_mms_campaign", {"mms_id": 1, "to_campaign": "x"}, "E714"),
]


@pytest.mark.parametrize(("method", "arguments", "code"), BAD_OTHER)
async def test_content_rules_are_checked_before_io(
    method: str, arguments: dict[str, Any], code: str
) -> None:
    """Slide composition and required-field rules of the other actions raise before any I/O."""
    transport = MockTransport(_refuse)
    async with SkycoreClient(api_key="k", transport=transport) as client:
        with pytest.raises(ValidationError) as caught:
            await getattr(client, method)(**arguments)
    assert caught.value.code == code
    assert transport.requests == []


async def test_hyphenated_dialect_requires_service_id_and_fallback() -> None:
    """The hyphenated dialect's mandatory fields are enforced locally (E627, E622)."""
    transport = MockTransport(_refuse)
    async with SkycoreClient(api_key="k", transport=transport, dialect="hyphenated") as client:
        with pytest.raises(ValidationError, match=r"E627|E622"):
            await client.send_saved_mms(to="16501234123", mms_id=1, from_="1")


async def test_ambiguous_drop_is_not_retried(client: SkycoreClient, emulator: Emulator) -> None:
    """A connection dropped after the server accepted is OutcomeUnknown and never resent."""
    emulator.settings.drop_after_accept = 1.0
    with pytest.raises(ConnectionLostError) as caught:
        await client.send_saved_mms(to="16501234123", mms_id=35674, from_="60856")
    assert caught.value.ambiguous
    assert caught.value.attempts == 1
    assert len(emulator.accepted) == 1
    assert emulator.duplicate_recipients() == {}


@pytest.mark.parametrize("method", ["xml", "get"])
async def test_dropped_answer_is_sent_once_in_both_methods(emulator: Emulator, method: str) -> None:
    """Neither the retry policy nor aiohttp's own reconnect resends a dropped GET or POST."""
    emulator.settings.drop_after_accept = 1.0
    async with make_client(emulator, method=method) as client:
        for n in range(3):
            with pytest.raises(ConnectionLostError):
                await client.send_saved_mms(to=f"1650123400{n}", mms_id=35674, from_="60856")
    assert len(emulator.accepted) == 3
    assert emulator.duplicate_recipients() == {}


async def test_ambiguous_drop_is_retried_when_opted_in(
    client: SkycoreClient, emulator: Emulator
) -> None:
    """retry_ambiguous=True resends after a drop (at-least-once), which may duplicate."""
    emulator.settings.drop_after_accept = 1.0
    retrying = client.with_options(retry=RetryPolicy.testing(retry_ambiguous=True, attempts=2))
    with pytest.raises(ConnectionLostError) as caught:
        await retrying.send_saved_mms(to="16501234123", mms_id=35674, from_="60856")
    assert caught.value.attempts == 2
    assert emulator.duplicate_recipients() == {"16501234123": 2}


async def test_html_502_is_a_protocol_error(client: SkycoreClient, emulator: Emulator) -> None:
    """An HTML error page is a ProtocolError carrying the status; it is not retried blindly."""
    emulator.settings.html_error_rate = 1.0
    with pytest.raises(ProtocolError) as caught:
        await client.get_mms_ids()
    assert caught.value.status == 502
    assert caught.value.attempts == 1


async def test_transient_server_error_is_retried_then_raised(
    client: SkycoreClient, emulator: Emulator
) -> None:
    """E503 is retried under the error budget, then raised as ServerError."""
    emulator.settings.error_rates = {"E503": 1.0}
    with pytest.raises(ServerError) as caught:
        await client.send_saved_mms(to="16501234123", mms_id=35674, from_="60856")
    assert caught.value.attempts == 3
    assert emulator.accepted == []


async def test_transient_error_then_success(client: SkycoreClient, emulator: Emulator) -> None:
    """With intermittent E618, a retried send succeeds and reports its attempts."""
    emulator.settings.error_rates = {"E618": 0.5}
    client = client.with_options(retry=RetryPolicy.testing(attempts=20))
    results = [
        await client.send_saved_mms(to=f"1650123{n:04d}", mms_id=35674, from_="60856")
        for n in range(20)
    ]
    assert len(emulator.accepted) == 20
    assert max(r.attempts for r in results) > 1


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_retried_and_is_a_connect_error(closed_port: int) -> None:
    """Refused connections were never sent: retried, then ConnectError."""
    async with SkycoreClient(
        api_key="k",
        base_url=f"http://127.0.0.1:{closed_port}/",
        retry=RetryPolicy.testing(),
        throttle=Throttle.testing(),
    ) as client:
        with pytest.raises(ConnectError) as caught:
            await client.get_mms_ids()
    assert not caught.value.ambiguous
    assert caught.value.attempts == 3


async def test_read_timeout_is_ambiguous(emulator: Emulator) -> None:
    """No answer within connect + read is ResponseTimeoutError (also a TimeoutError), not retried."""
    emulator.settings.latency = 1.0
    async with make_client(emulator, timeouts=Timeouts(connect=0.2, read=0.1)) as client:
        with pytest.raises(ResponseTimeoutError) as caught:
            await client.send_saved_mms(to="16501234123", mms_id=35674, from_="60856")
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.attempts == 1


async def test_repr_and_logs_hide_the_key(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither repr nor any log line (at DEBUG) shows the API key or the request body."""
    caplog.set_level(logging.DEBUG)
    async with make_client(emulator, method="get") as client:
        assert API_KEY not in repr(client)
        await client.send_saved_mms(to="16501234123", mms_id=35674, from_="60856")
        emulator.settings.error_rates = {"E503": 1.0}
        with pytest.raises(ServerError):
            await client.send_saved_mms(to="16501234123", mms_id=35674, from_="60856")
    assert caplog.records
    assert all(API_KEY not in record.getMessage() for record in caplog.records)


async def test_closed_client_refuses_calls_and_reopening(emulator: Emulator) -> None:
    """A closed client raises ClientStateError; it cannot be re-entered."""
    client = make_client(emulator)
    async with client:
        pass
    with pytest.raises(ClientStateError):
        await client.get_mms_ids()
    with pytest.raises(ClientStateError):
        await client.__aenter__()


def test_plain_http_to_a_remote_host_warns() -> None:
    """An http:// base URL other than loopback warns that the key would travel in clear."""
    with pytest.warns(UserWarning, match="unencrypted"):
        SkycoreClient(api_key="k", base_url="http://api.example.com/index.php")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SkycoreClient(api_key="k", base_url="http://127.0.0.1:8080/")


def test_credentials_are_exclusive() -> None:
    """api_key and USER/PASS cannot be mixed, and one of them is required."""
    with pytest.raises(ValueError, match="either api_key"):
        SkycoreClient(api_key="k", user="u", password="p")
    with pytest.raises(ValueError, match="give api_key"):
        SkycoreClient()


async def test_with_options_shares_the_session(emulator: Emulator) -> None:
    """A with_options view keeps working after use and does not close the parent's session."""
    async with make_client(emulator) as client:
        view = client.with_options(retry=RetryPolicy.testing(attempts=1))
        await view.get_mms_ids()
        await view.aclose()
        await client.get_mms_ids()


async def test_trickling_reply_hits_the_deadline() -> None:
    """A reply that drips in slowly cannot hold a send forever: connect + read is a deadline."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/xml"})
        await response.prepare(request)
        for byte in b"<RESPONSE><STATUS>Success</STATUS></RESPONSE>":
            await response.write(bytes([byte]))
            await asyncio.sleep(0.05)
        return response

    app = web.Application()
    app.router.add_post("/", trickle)
    async with TestServer(app, host="127.0.0.1") as server:
        base_url = str(server.make_url("/"))
        async with SkycoreClient(api_key="k", base_url=base_url, timeouts=Timeouts(connect=0.2, read=0.3),
                                 retry=RetryPolicy.testing(), throttle=Throttle.testing()) as client:  # fmt: skip
            with pytest.raises(ResponseTimeoutError):
                await client.get_mms_ids()
