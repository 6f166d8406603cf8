"""The local Skycore emulator (skycore_async.testing), driven with plain aiohttp requests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from skycore_async.errors import ProtocolError
from skycore_async.fields import ApiRequest, Dialect
from skycore_async.notifications import Notification, decode_notifications
from skycore_async.protocol import (
    ApiResponse,
    decode_response,
    encode_form_body,
    encode_query,
    encode_response,
    encode_xml,
)
from skycore_async.testing import (
    API_PATH,
    Emulator,
    EmulatorSettings,
    _encode_reply,
    _seconds,
    serve,
)

FIXTURES = Path(__file__).parent / "fixtures" / "emulator"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TO = "15551234567"
SECRET_MD5 = hashlib.md5(b"secret").hexdigest()
Method = str  # "form" | "raw" | "get"


# --------------------------------------------------------------------------- helpers


@attrs.define
class Receiver:
    """A postback receiver on 127.0.0.1 that records what it is sent."""

    url: str = ""
    bodies: list[bytes] = attrs.Factory(list)
    notifications: list[Notification] = attrs.Factory(list)
    status: int = 200
    arrived: asyncio.Event = attrs.Factory(asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.status == 200:
            self.bodies.append(body)
            self.notifications += decode_notifications(body, request.content_type)
            self.arrived.set()
        return web.Response(status=self.status)

    def codes(self) -> list[str]:
        return [n.code for n in self.notifications]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorSettings(seed=7)) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/postbacks", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recv.url = f"http://127.0.0.1:{runner.addresses[0][1]}/postbacks"
    yield recv
    await runner.cleanup()


async def post_raw(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str] | None = None
) -> ApiResponse:
    async with http.post(url, data=body, headers=dict(headers or {})) as response:
        assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
        return decode_response(await response.read(), status=response.status)


async def call(
    http: aiohttp.ClientSession,
    emu: Emulator,
    action: str,
    fields: Mapping[str, Any],
    *,
    dialect: Dialect = "skycore",
    method: Method = "form",
    auth: Mapping[str, str] | None = None,
) -> ApiResponse:
    """One API call in the given dialect and request form; returns the decoded reply."""
    request = ApiRequest(action, {**(auth or {"API_KEY": "test-key"}), **fields})
    if method == "get":
        async with http.get(emu.url, params=encode_query(request, dialect)) as response:
            return decode_response(await response.read(), status=response.status)
    if method == "raw":
        return await post_raw(http, emu.url, encode_xml(request, dialect).encode("utf-8"))
    return await post_raw(http, emu.url, encode_form_body(request, dialect), FORM)


def send_fields(mms_id: str, to: str = TO, **extra: str) -> dict[str, str]:
    return {"MMSID": mms_id, "TO": to, "FROM": "60856", **extra}


HYPHENATED_EXTRA = {"SERVICEID": "1234", "FALLBACKSMSTEXT": "See your MMS"}
SLIDES = [{"TEXT": "Hello", "IMAGE": {"URL": "http://example.com/a.jpg"}}, {"TEXT": "Bye"}]


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize(
    ("dialect", "method"),
    [
        ("skycore", "form"),
        ("skycore", "raw"),
        ("skycore", "get"),
        ("hyphenated", "form"),
        ("hyphenated", "get"),
    ],
)
async def test_send_saved_mms_every_form(
    emu: Emulator, http: aiohttp.ClientSession, dialect: Dialect, method: Method
) -> None:
    """sendSavedMMS succeeds in both dialects as form, raw XML and GET, and is recorded."""
    mms_id = emu.add_template()
    extra = HYPHENATED_EXTRA if dialect == "hyphenated" else {}
    fields = send_fields(mms_id, CLIENT_REFERENCE="ref-1", **extra)
    reply = await call(http, emu, "sendSavedMMS", fields, dialect=dialect, method=method)
    assert reply.status == "Success", reply.fields
    assert reply.get("MMSID") == mms_id
    assert reply.get("TO") == TO
    assert reply.get("FROM") == "60856"
    assert reply.get("STATUSDETAILS") == "MMS request accepted and queued for delivery"
    assert base64.b64decode(reply.get("TRACKINGID") or "").startswith(b"MMS_")
    (send,) = emu.accepted
    assert (send.action, send.to, send.mms_id, send.client_reference) == (
        "sendSavedMMS",
        TO,
        mms_id,
        "ref-1",
    )
    assert send.tracking_id == reply.get("TRACKINGID")


async def test_hyphenated_reply_uses_hyphenated_tags(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """A hyphenated request (the documented sample) gets a lower-case hyphenated reply."""
    emu.add_template("35674")
    body = (FIXTURES / "hyphenated_send_saved_mms.xml").read_bytes()
    async with http.post(emu.url, data=body, headers={"Content-Type": "text/xml"}) as response:
        text = await response.text()
    assert "<response><status>Success</status><mms-id>35674</mms-id><tracking-id>" in text
    assert "<status-details>" in text
    assert emu.accepted[0].client_reference == "order-123"


@pytest.mark.parametrize("dialect", ["skycore", "hyphenated"])
@pytest.mark.parametrize("method", ["form", "get"])
async def test_send_sms(
    emu: Emulator, http: aiohttp.ClientSession, dialect: Dialect, method: Method
) -> None:
    """sendSMS answers a base64 SMS_<n> tracking id and the recipient."""
    fields = {"TO": TO, "FROM": "60856", "TEXT": "Hello"}
    reply = await call(http, emu, "sendSMS", fields, dialect=dialect, method=method)
    assert reply.status == "Success"
    assert reply.get("TO") == TO
    assert base64.b64decode(reply.get("TRACKINGID") or "").startswith(b"SMS_")
    assert [(s.action, s.mms_id) for s in emu.accepted] == [("sendSMS", None)]


@pytest.mark.parametrize("dialect", ["skycore", "hyphenated"])
@pytest.mark.parametrize("method", ["form", "get"])
async def test_get_mms_ids(
    emu: Emulator, http: aiohttp.ClientSession, dialect: Dialect, method: Method
) -> None:
    """getMmsIds answers E200 with no templates, then the comma-separated ids."""
    reply = await call(http, emu, "getMmsIds", {}, dialect=dialect, method=method)
    assert (reply.status, reply.get("ERRORCODE")) == ("Failure", "E200")
    first, second = emu.add_template(), emu.add_template(900)
    reply = await call(http, emu, "getMmsIds", {}, dialect=dialect, method=method)
    assert reply.get("MMSIDS") == f"{first},{second}"


@pytest.mark.parametrize("dialect", ["skycore", "hyphenated"])
@pytest.mark.parametrize("method", ["form", "get"])
async def test_campaign_send_records_every_subscriber(
    emu: Emulator, http: aiohttp.ClientSession, dialect: Dialect, method: Method
) -> None:
    """sendSavedMMSCampaign records one send per subscriber under one SCHEDULEDID."""
    mms_id = emu.add_template()
    emu.add_campaign(332, ["+1 555 000 0001", "15550000002", "15550000003"])
    fields = {"MMSID": mms_id, "TOCAMPAIGN": "332"}
    reply = await call(http, emu, "sendSavedMMSCampaign", fields, dialect=dialect, method=method)
    assert reply.status == "Success"
    assert reply.get("MMSID") == mms_id
    scheduled = reply.get("SCHEDULEDID")
    assert scheduled
    assert sorted(s.to for s in emu.accepted) == ["15550000001", "15550000002", "15550000003"]
    assert {s.scheduled_id for s in emu.accepted} == {scheduled}
    assert len({s.tracking_id for s in emu.accepted}) == 3


async def test_campaign_send_unknown_campaign(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """An unknown TOCAMPAIGN is E714 and nothing is recorded."""
    mms_id = emu.add_template()
    reply = await call(http, emu, "sendSavedMMSCampaign", {"MMSID": mms_id, "TOCAMPAIGN": "9"})
    assert reply.get("ERRORCODE") == "E714"
    assert not emu.accepted


@pytest.mark.parametrize("dialect", ["skycore", "hyphenated"])
async def test_save_mms_then_send_it(
    emu: Emulator, http: aiohttp.ClientSession, dialect: Dialect
) -> None:
    """saveMMS answers a new MMSID that sendSavedMMS can then send."""
    fields = {"NAME": "promo", "SUBJECT": "Hi", "SLIDE": SLIDES}
    reply = await call(http, emu, "saveMMS", fields, dialect=dialect)
    mms_id = reply.get("MMSID")
    assert reply.status == "Success"
    assert mms_id in emu.templates
    assert emu.templates[mms_id].slides == 2
    assert emu.templates[mms_id].name == "promo"
    extra = HYPHENATED_EXTRA if dialect == "hyphenated" else {}
    reply = await call(http, emu, "sendSavedMMS", send_fields(mms_id, **extra), dialect=dialect)
    assert reply.status == "Success"


@pytest.mark.parametrize("dialect", ["skycore", "hyphenated"])
async def test_send_mms(emu: Emulator, http: aiohttp.ClientSession, dialect: Dialect) -> None:
    """sendMMS saves the content and sends it: TO, MMSID, TRACKINGID, STATUSDETAILS."""
    extra = HYPHENATED_EXTRA if dialect == "hyphenated" else {}
    fields = {"TO": TO, "FROM": "60856", "NAME": "n", "SUBJECT": "S", "SLIDE": SLIDES, **extra}
    reply = await call(http, emu, "sendMMS", fields, dialect=dialect)
    assert reply.status == "Success"
    assert reply.get("TO") == TO
    assert reply.get("MMSID") in emu.templates
    assert reply.get("TRACKINGID")
    assert reply.get("STATUSDETAILS")
    assert [(s.action, s.mms_id) for s in emu.accepted] == [("sendMMS", reply.get("MMSID"))]


async def test_legacy_send_mms_with_user_and_pass(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """The 2014 CONTENT/SEQUENCE sendMMS with USER/PASS (MD5) works as raw XML and as xml=."""
    emu.settings.users["demo"] = SECRET_MD5
    body = (FIXTURES / "legacy_send_mms.xml").read_bytes()
    reply = await post_raw(http, emu.url, body, {"Content-Type": "text/xml"})
    assert reply.status == "Success", reply.fields
    form = aiohttp.FormData({"xml": body.decode()})
    async with http.post(emu.url, data=form) as response:
        assert decode_response(await response.read()).status == "Success"
    template = emu.templates[reply.get("MMSID") or ""]
    assert (template.slides, template.name, template.subject) == (2, "fishtank", "Fish tank")
    assert [s.to for s in emu.accepted] == ["15551234888", "15551234888"]


async def test_multipart_xml_field(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """The PHP SDK's multipart form with field XML is understood."""
    emu.add_template("35674")
    request = ApiRequest("sendSavedMMS", {"API_KEY": "test-key", **send_fields("35674")})
    form = aiohttp.FormData()
    form.add_field("XML", encode_xml(request))
    form.add_field("other", "x", filename="x.txt")
    async with http.post(emu.url, data=form) as response:
        assert decode_response(await response.read()).status == "Success"


async def test_both_paths_answer(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """The emulator answers on / and on /API/wxml/1.3/index.php."""
    assert emu.url.endswith(API_PATH)
    assert emu.url.startswith("http://127.0.0.1:")
    root = emu.url.removesuffix(API_PATH) + "/"
    async with http.get(root, params={"action": "getMmsIds", "api_key": "test-key"}) as response:
        assert decode_response(await response.read()).get("ERRORCODE") == "E200"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("auth", "code"),
    [
        ({}, "E102"),
        ({"API_KEY": "wrong"}, "E104"),
        ({"USER": "demo"}, "E103"),
        ({"USER": "demo", "PASS": hashlib.md5(b"nope").hexdigest()}, "E104"),
        ({"USER": "nobody", "PASS": SECRET_MD5}, "E104"),
    ],
)
async def test_authentication_errors(
    emu: Emulator, http: aiohttp.ClientSession, auth: dict[str, str], code: str
) -> None:
    """Missing key/user is E102, user without PASS E103, bad key or MD5 E104."""
    emu.settings.users["demo"] = SECRET_MD5
    reply = await call(http, emu, "sendSavedMMS", send_fields("1"), auth=auth or {"X": "y"})
    assert (reply.status, reply.get("ERRORCODE"), reply.get("TO")) == ("Failure", code, TO)
    assert reply.get("ERRORINFO")
    assert not emu.accepted


async def test_unknown_action_is_e101(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """An action the API does not have is E101."""
    reply = await call(http, emu, "sendFax", {})
    assert reply.get("ERRORCODE") == "E101"


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (b"<REQUEST><ACTION>sendSMS</ACTION>", {"Content-Type": "text/xml"}, "E108"),
        (b"xml=%3CREQUEST%3E%3CACTION%3E", FORM, "E108"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><REQUEST/>', {"Content-Type": "text/xml"}, "E108"),
        (b"<FOO><ACTION>sendSMS</ACTION></FOO>", {"Content-Type": "text/xml"}, "E100"),
        (b"", {}, "E100"),
    ],
)
async def test_undecodable_requests(
    emu: Emulator, http: aiohttp.ClientSession, body: bytes, headers: dict[str, str], code: str
) -> None:
    """Malformed XML is E108; other undecodable requests are E100."""
    reply = await post_raw(http, emu.url, body, headers)
    assert (reply.status, reply.get("ERRORCODE")) == ("Failure", code)
    assert emu.answers[code] == 1


async def test_validation_error_echoes_to(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """A request validate_request rejects gets its code, its message and TO echoed."""
    reply = await call(http, emu, "sendSavedMMS", send_fields("1", to="12"))
    assert (reply.get("ERRORCODE"), reply.get("TO")) == ("E110", "12")
    assert "digits" in (reply.get("ERRORINFO") or "")
    reply = await call(http, emu, "sendSavedMMS", {"MMSID": "1", "FROM": "60856"})
    assert reply.get("ERRORCODE") == "E621"
    assert reply.get("TO") is None


async def test_failure_echo_is_valid_xml(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Control characters in an echoed GET value do not break the XML reply."""
    params = {"action": "send\x01", "api_key": "test-key", "to": "1555\x00"}
    async with http.get(emu.url, params=params) as response:
        reply = decode_response(await response.read())
    assert reply.get("ERRORCODE") == "E101"
    assert reply.get("TO") == "1555\ufffd"


async def test_unknown_template_is_e241(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Sending a template that does not exist is E241."""
    reply = await call(http, emu, "sendSavedMMS", send_fields("4242"))
    assert reply.get("ERRORCODE") == "E241"
    assert not emu.accepted


async def test_blacklisted_number_is_e114(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """A blacklisted recipient is E114 for MMS and SMS alike."""
    emu.settings.blacklist.add(TO)
    reply = await call(http, emu, "sendSavedMMS", send_fields(emu.add_template()))
    assert reply.get("ERRORCODE") == "E114"
    reply = await call(http, emu, "sendSMS", {"TO": TO, "FROM": "60856", "TEXT": "x"})
    assert reply.get("ERRORCODE") == "E114"
    assert not emu.accepted


async def test_enforced_campaign_check(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """With the campaign check on: E718 without CAMPAIGNREF, E721 unknown, E715 not in it."""
    emu.settings.enforce_campaign_check = True
    emu.add_campaign(5, [TO], campaign_ref="spring")
    mms_id = emu.add_template()
    cases = [({}, "E718"), ({"CAMPAIGNREF": "autumn"}, "E721")]
    cases += [({"CAMPAIGNREF": "spring", "TO": "15559999999"}, "E715")]
    for extra, code in cases:
        reply = await call(http, emu, "sendSavedMMS", {**send_fields(mms_id), **extra})
        assert reply.get("ERRORCODE") == code
    reply = await call(http, emu, "sendSavedMMS", send_fields(mms_id, CAMPAIGNREF="spring"))
    assert reply.status == "Success"
    assert len(emu.accepted) == 1


# --------------------------------------------------------------------------- throttles


async def test_min_interval_e106(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """A call sooner than min_interval after the last accepted one is E106 naming X."""
    emu.settings.min_interval = 0.25
    first = await call(http, emu, "getMmsIds", {})
    second = await call(http, emu, "getMmsIds", {})
    assert first.get("ERRORCODE") == "E200"
    assert second.get("ERRORCODE") == "E106"
    assert second.get("ERRORINFO") == "You can call API every 0.25 seconds"
    await asyncio.sleep(0.26)
    assert (await call(http, emu, "getMmsIds", {})).get("ERRORCODE") == "E200"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.05, "0.05"), (2.0, "2"), (1.5, "1.5"), (0.001, "0.001")]
)
def test_e106_interval_text(seconds: float, text: str) -> None:
    """E106 prints X the way Skycore does: 0.05, 2, 1.5."""
    assert _seconds(seconds) == text


async def test_throughput_e113(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Past the per-action token bucket the call is E113; other actions are unaffected."""
    emu.settings.throughput = {"sendsms": 5.0}
    emu.settings.throughput_burst = 2
    sms = {"TO": TO, "FROM": "60856", "TEXT": "x"}
    codes = [(await call(http, emu, "sendSMS", sms)).get("ERRORCODE") for _ in range(3)]
    assert codes == [None, None, "E113"]
    reply = await call(http, emu, "sendSMS", sms)
    assert reply.get("ERRORINFO") == (
        "Set throughput exceeded for this API action. API call rejected."
    )
    assert (await call(http, emu, "getMmsIds", {})).get("ERRORCODE") == "E200"
    await asyncio.sleep(0.21)
    assert (await call(http, emu, "sendSMS", sms)).status == "Success"
    assert len(emu.accepted) == 3


async def test_quota_e120(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """After `quota` accepted calls every call is E120; auth failures do not count."""
    emu.settings.quota = 2
    await call(http, emu, "getMmsIds", {}, auth={"API_KEY": "bad"})
    codes = [(await call(http, emu, "getMmsIds", {})).get("ERRORCODE") for _ in range(4)]
    assert codes == ["E200", "E200", "E120", "E120"]


# --------------------------------------------------------------------------- faults


async def test_drop_before_accept(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """drop_before_accept closes the connection unanswered and records nothing."""
    emu.settings.drop_before_accept = 1.0
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, emu, "sendSavedMMS", send_fields(emu.add_template()))
    assert not emu.accepted
    assert emu.answers["DROP_BEFORE_ACCEPT"] == 1


async def test_drop_after_accept(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """drop_after_accept closes the connection unanswered but the send IS recorded."""
    emu.settings.drop_after_accept = 1.0
    mms_id = emu.add_template()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, emu, "sendSavedMMS", send_fields(mms_id))
    assert [s.to for s in emu.accepted] == [TO]
    emu.settings.drop_after_accept = 0.0
    assert (await call(http, emu, "sendSavedMMS", send_fields(mms_id))).status == "Success"
    assert emu.duplicate_recipients() == {TO: 2}


async def test_truncated_after_accept(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """truncated_after_accept records the send, then answers half an XML document."""
    emu.settings.truncated_after_accept = 1.0
    with pytest.raises(ProtocolError):
        await call(http, emu, "sendSavedMMS", send_fields(emu.add_template()))
    assert len(emu.accepted) == 1
    assert emu.answers["TRUNCATED"] == 1


async def test_html_502(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """html_error_rate answers HTTP 502 with an HTML page and records nothing."""
    emu.settings.html_error_rate = 1.0
    request = ApiRequest("sendSavedMMS", {"API_KEY": "test-key", **send_fields("1")})
    async with http.post(emu.url, data=encode_form_body(request), headers=FORM) as response:
        assert response.status == 502
        assert response.content_type == "text/html"
        assert b"502 Bad Gateway" in await response.read()
    assert not emu.accepted
    assert emu.answers["HTML_502"] == 1


async def test_injected_error_code(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """error_rates {"E503": 1.0} answers E503 and records nothing."""
    emu.settings.error_rates = {"E503": 1.0}
    reply = await call(http, emu, "sendSavedMMS", send_fields(emu.add_template()))
    assert (reply.get("ERRORCODE"), reply.get("TO")) == ("E503", TO)
    assert not emu.accepted


def test_settings_reject_bad_probabilities() -> None:
    """Probabilities outside [0, 1] are refused, also when set later."""
    with pytest.raises(ValueError, match="drop_after_accept"):
        EmulatorSettings(drop_after_accept=1.5)
    settings_ = EmulatorSettings()
    with pytest.raises(ValueError, match="html_error_rate"):
        settings_.html_error_rate = -0.1


async def test_seeded_faults_are_reproducible(http: aiohttp.ClientSession) -> None:
    """Two emulators with the same seed answer the same request sequence identically."""
    outcomes = []
    for _ in range(2):
        config = EmulatorSettings(seed=3, error_rates={"E503": 0.3, "E618": 0.3})
        async with Emulator(config) as emulator:
            mms_id = emulator.add_template()
            for _ in range(20):
                await call(http, emulator, "sendSavedMMS", send_fields(mms_id))
            outcomes.append(emulator.answers)
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0]) == 3


async def test_latency_does_not_block(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Latency delays each answer, but concurrent requests wait in parallel."""
    emu.settings.latency = 0.2
    started = time.monotonic()
    replies = await asyncio.gather(*(call(http, emu, "getMmsIds", {}) for _ in range(5)))
    elapsed = time.monotonic() - started
    assert all(r.get("ERRORCODE") == "E200" for r in replies)
    assert 0.2 <= elapsed < 0.6


async def test_reset_keeps_templates(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """reset() clears records, counters and throttle state but keeps templates."""
    emu.settings.quota = 1
    mms_id = emu.add_template()
    await call(http, emu, "sendSavedMMS", send_fields(mms_id))
    emu.reset()
    assert (emu.accepted, emu.requests_received, sum(emu.answers.values())) == ([], 0, 0)
    assert (await call(http, emu, "sendSavedMMS", send_fields(mms_id))).status == "Success"
    assert emu.requests_received == 1


# --------------------------------------------------------------------------- encoding


async def test_encoding_template_is_e626_then_n003(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """A saved audio template answers E626 until encoded, then N003 is posted."""
    config = EmulatorSettings(encoding_delay=0.3, postback_url=receiver.url)
    async with Emulator(config) as emulator:
        slide = {"AUDIO": {"URL": "http://example.com/a.mp3"}, "TEXT": "x"}
        fields = {"NAME": "n", "SUBJECT": "s", "SLIDE": [slide]}
        mms_id = (await call(http, emulator, "saveMMS", fields)).get("MMSID") or ""
        reply = await call(http, emulator, "sendSavedMMS", send_fields(mms_id))
        assert reply.get("ERRORCODE") == "E626"
        await emulator.wait_for_postbacks()
        assert receiver.codes() == ["N003"]
        assert receiver.notifications[0].mms_id == mms_id
        assert (await call(http, emulator, "sendSavedMMS", send_fields(mms_id))).status == "Success"


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(["STATUS", "MMSID", "TRACKINGID", "TO", "ERRORINFO", "API_KEY", "X_Y"]),
        st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
    ),
    dialect=st.sampled_from(["skycore", "hyphenated"]),
)
def test_fast_reply_encoder_matches_protocol(fields: dict[str, str], dialect: Dialect) -> None:
    """The emulator's string encoder writes exactly what protocol.encode_response writes."""
    items = list(fields.items())
    try:
        expected = encode_response(items, dialect)
    except ValueError:
        return  # characters XML cannot carry: the emulator never answers those
    assert _encode_reply(items, dialect) == expected


# --------------------------------------------------------------------------- postbacks


async def postback_run(
    http: aiohttp.ClientSession, receiver: Receiver, sends: int = 1, **config: Any
) -> Emulator:
    """Run an emulator with postbacks to `receiver`, make `sends` sends, wait for postbacks."""
    base = EmulatorSettings(postback_url=receiver.url, postback_delay=0.02, seed=1)
    async with Emulator(attrs.evolve(base, **config)) as emulator:
        mms_id = emulator.add_template()
        for number in range(sends):
            fields = send_fields(mms_id, to=f"1555000000{number}", CLIENT_REFERENCE=f"c{number}")
            assert (await call(http, emulator, "sendSavedMMS", fields)).status == "Success"
        async with asyncio.timeout(5):
            await emulator.wait_for_postbacks()
    return emulator


async def test_postbacks_n101_then_n102(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    """Each accepted send posts N101 then N102 with its tracking id and client reference."""
    emulator = await postback_run(http, receiver)
    (send,) = emulator.accepted
    assert receiver.codes() == ["N101", "N102"]
    first, final = receiver.notifications
    assert {first.tracking_id, final.tracking_id} == {send.tracking_id}
    assert (first.sent_as, first.status, first.to, first.mms_id) == (
        "MMS",
        "Message Sent",
        send.to,
        send.mms_id,
    )
    assert first.client_reference == "c0"
    assert first.operator_id
    assert first.timestamp
    assert first.timestamp.utcoffset() is not None
    assert (final.status, bool(final.handset), bool(final.aggregator_id)) == (
        "Message Sent/Delivered",
        True,
        True,
    )
    assert emulator.postbacks_sent == receiver.notifications


async def test_postback_duplicates(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    """postback_duplicates=1 posts every notification twice."""
    emulator = await postback_run(http, receiver, postback_duplicates=1.0)
    assert receiver.codes() == ["N101", "N101", "N102", "N102"]
    assert len(emulator.postbacks_sent) == 4
    assert receiver.notifications[0].dedupe_key() == receiver.notifications[1].dedupe_key()


async def test_postback_delivery_failure(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    """delivery_failure_rate=1 ends with E102 Message Sent/Rejected."""
    await postback_run(http, receiver, delivery_failure_rate=1.0)
    assert receiver.codes() == ["N101", "E102"]
    assert receiver.notifications[1].status == "Message Sent/Rejected"
    assert receiver.notifications[1].status_details


async def test_postback_sms_fallback(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    """sms_fallback_rate=1 gives N101 with SENTAS SMS, then N202."""
    await postback_run(http, receiver, sms_fallback_rate=1.0)
    assert receiver.codes() == ["N101", "N202"]
    assert [n.sent_as for n in receiver.notifications] == ["SMS", "SMS"]
    assert receiver.notifications[1].is_delivered


async def test_postback_reorder(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    """postback_reorder posts the final notification before N101 for some sends."""
    emulator = await postback_run(http, receiver, sends=6, postback_reorder=True)
    orders = {
        tuple(n.code for n in receiver.notifications if n.tracking_id == send.tracking_id)
        for send in emulator.accepted
    }
    assert orders == {("N101", "N102"), ("N102", "N101")}


@pytest.mark.parametrize("dialect", ["hyphenated", "legacy"])
async def test_postback_dialects(
    http: aiohttp.ClientSession, receiver: Receiver, dialect: str
) -> None:
    """Postbacks can be posted in the hyphenated and the legacy NOTIFICATION format."""
    await postback_run(http, receiver, postback_dialect=dialect)
    assert receiver.codes() == ["N101", "N102"]
    marker = b"<postback>" if dialect == "hyphenated" else b"<NOTIFICATION"
    assert all(marker in body for body in receiver.bodies)


async def test_postback_failures_are_counted(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """A receiver that keeps failing makes the postbacks count in postback_failures."""
    receiver.status = 500
    emulator = await postback_run(http, receiver)
    assert (emulator.postback_failures, emulator.postbacks_sent) == (2, [])


async def test_sms_postbacks(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    """sendSMS posts N201 then N202 with origin SMS_MT."""
    config = EmulatorSettings(postback_url=receiver.url, postback_delay=0.01)
    async with Emulator(config) as emulator:
        await call(http, emulator, "sendSMS", {"TO": TO, "FROM": "60856", "TEXT": "x"})
        await emulator.wait_for_postbacks()
    assert receiver.codes() == ["N201", "N202"]
    assert {n.origin for n in receiver.notifications} == {"SMS_MT"}


async def test_stop_cancels_pending_postbacks(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """stop() cancels postbacks that have not gone out yet."""
    config = EmulatorSettings(postback_url=receiver.url, postback_delay=30)
    async with Emulator(config) as emulator:
        await call(http, emulator, "sendSavedMMS", send_fields(emulator.add_template()))
        async with asyncio.timeout(5):
            await receiver.arrived.wait()
    assert receiver.codes() == ["N101"]
    assert not emulator._tasks


# --------------------------------------------------------------------------- serve


async def test_serve_runs_until_cancelled(
    http: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve() prints its URL, answers requests and stops when cancelled."""
    task = asyncio.create_task(serve("127.0.0.1", 0, EmulatorSettings(), templates=["77"]))
    printed = ""
    for _ in range(200):
        await asyncio.sleep(0.01)
        printed += capsys.readouterr().out
        if match := re.search(r"http://\S+", printed):
            break
    else:
        pytest.fail("serve() printed no URL")
    params = {"action": "getMmsIds", "api_key": "test-key"}
    async with http.get(match.group(), params=params) as response:
        assert decode_response(await response.read()).get("MMSIDS") == "77"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
