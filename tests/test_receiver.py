"""The postback receiver: fast 200, store before acknowledging, dedupe, limits, secrets, restarts."""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from skycore_async.notifications import Notification, encode_legacy_batch, encode_notification
from skycore_async.receiver import RECEIVER_KEY, PostbackReceiver, make_postback_app


def note(
    code: str = "N102", tracking_id: str = "TU1TXzU5Nzg3OQ==", seconds: int = 0
) -> Notification:
    """An MMS_MT notification for one tracking id."""
    return Notification(
        origin="MMS_MT",
        code=code,
        sent_as="MMS",
        status="Message Sent/Delivered" if code == "N102" else "Message Sent",
        tracking_id=tracking_id,
        to="16501112222",
        mms_id="39597",
        timestamp=datetime(2024, 6, 7, 7, 27, 29, tzinfo=UTC) + timedelta(seconds=seconds),
    )


def basic(user: str, password: str) -> str:
    """A basic authorization header value (UTF-8 credentials)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def body(n: Notification | None = None) -> bytes:
    """A flat <POSTBACK> body."""
    return encode_notification(n or note())


Serve = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start make_postback_app(**options) on 127.0.0.1 and return a test client for it."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**options: Any) -> TestClient[Any, Any]:
        client = TestClient(TestServer(make_postback_app(**options), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def receiver_of(client: TestClient[Any, Any]) -> PostbackReceiver:
    """The receiver state behind a test client's app."""
    app = client.server.app
    assert app is not None
    return app[RECEIVER_KEY]


def stored(path: Path) -> list[dict[str, Any]]:
    """The records in a notifications file."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_answers_200_before_the_callback_finishes(serve: Serve) -> None:
    """The 200 goes out while the callback is still blocked; the callback then gets it."""
    release, done, got = asyncio.Event(), asyncio.Event(), []

    async def slow(n: Notification) -> None:
        await release.wait()
        got.append(n)
        done.set()

    client = await serve(on_notification=slow)
    async with asyncio.timeout(2):
        response = await client.post("/postbacks", data=body())
    assert (response.status, got) == (200, [])
    release.set()
    async with asyncio.timeout(2):
        await done.wait()
    assert got == [note()]


async def test_notification_is_stored_before_the_200(serve: Serve, tmp_path: Path) -> None:
    """Right after the response the file holds the notification, with every field."""
    out = tmp_path / "n.jsonl"
    client = await serve(out=out)
    response = await client.post("/postbacks", data=body(), headers={"Content-Type": "text/xml"})
    assert response.status == 200
    (record,) = stored(out)
    assert (record["code"], record["tracking_id"]) == ("N102", "TU1TXzU5Nzg3OQ==")
    assert record["timestamp"] == "2024-06-07T07:27:29+00:00"
    assert record["key"] == note().dedupe_key()
    assert datetime.fromisoformat(record["received_at"]).tzinfo is not None
    assert {
        "from",
        "to",
        "sent_as",
        "mms_id",
        "status_details",
        "extra",
        "created",
    } <= record.keys()


async def test_duplicates_answered_200_and_dropped(serve: Serve, tmp_path: Path) -> None:
    """A redelivery gets 200 but is neither stored nor handed to the callback again."""
    out, got = tmp_path / "n.jsonl", []

    async def collect(n: Notification) -> None:
        got.append(n)

    client = await serve(out=out, on_notification=collect)
    statuses = [(await client.post("/postbacks", data=body())).status for _ in range(3)]
    batch = encode_legacy_batch([note("N101"), note("N101")])  # repeated inside one batch too
    statuses.append((await client.post("/postbacks", data=batch)).status)
    await receiver_of(client).drain()
    assert statuses == [200] * 4
    assert [r["code"] for r in stored(out)] == ["N102", "N101"]
    assert [n.code for n in got] == ["N102", "N101"]
    assert receiver_of(client).stats.duplicates == 3


async def test_form_encoded_body_is_accepted(serve: Serve, tmp_path: Path) -> None:
    """The XML in an `xml` form field works like a raw body."""
    out = tmp_path / "n.jsonl"
    client = await serve(out=out)
    response = await client.post("/postbacks", data={"xml": body().decode()})
    assert response.status == 200
    assert [r["code"] for r in stored(out)] == ["N102"]


async def test_oversized_body_gets_413(serve: Serve, tmp_path: Path) -> None:
    """Bodies over max_body get 413, by Content-Length or while streaming; max_body fits."""
    out = tmp_path / "n.jsonl"
    client = await serve(out=out, max_body=600)
    padded = body().replace(b"</POSTBACK>", b"<X>" + b"y" * 1000 + b"</X></POSTBACK>")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(padded), 100):
            yield padded[start : start + 100]

    assert (await client.post("/postbacks", data=padded)).status == 413
    assert (await client.post("/postbacks", data=chunks())).status == 413
    exact = body() + b" " * (600 - len(body()))
    assert (await client.post("/postbacks", data=exact)).status == 200
    assert len(stored(out)) == 1
    assert receiver_of(client).stats.too_large == 2


async def test_malformed_body_gets_400_and_serving_goes_on(serve: Serve) -> None:
    """Malformed bodies get 400; the next good one is accepted."""
    client = await serve()
    for bad in (
        b"",
        b"<POSTBACK><CODE>N101",
        b"<html/>",
        b"<POSTBACK><ORIGIN>MMS_MT</ORIGIN></POSTBACK>",
    ):
        assert (await client.post("/postbacks", data=bad)).status == 400
    assert (await client.post("/postbacks", data=body())).status == 200
    assert receiver_of(client).stats.malformed == 4


async def test_secret_in_the_path(serve: Serve) -> None:
    """With a secret, /postbacks/{secret} works; a wrong token is 404, no token 401."""
    client = await serve(secret="s3cret-token")
    assert (await client.post("/postbacks/s3cret-token", data=body())).status == 200
    assert (await client.post("/postbacks/wrong", data=body())).status == 404
    assert (await client.post("/postbacks/s3cret-tokenx", data=body())).status == 404
    assert (await client.post("/postbacks", data=body())).status == 401


async def test_secret_as_basic_auth_password(serve: Serve) -> None:
    """Basic auth with the secret as password works; a wrong or garbled one is 401."""
    client = await serve(secret="pässword")
    good = {"Authorization": basic("skycore", "pässword")}
    bad = {"Authorization": basic("skycore", "password")}
    assert (await client.post("/postbacks", data=body(), headers=good)).status == 200
    response = await client.post("/postbacks", data=body(), headers=bad)
    assert (response.status, response.headers["WWW-Authenticate"]) == (
        401,
        'Basic realm="postbacks"',
    )
    for garbled in (
        "Basic !!!",
        "Basic " + base64.b64encode(b"no colon").decode(),
        "Bearer pässword",
    ):
        assert (
            await client.post("/postbacks", data=body(), headers={"Authorization": garbled})
        ).status == 401
    assert receiver_of(client).stats.unauthorized == 4


async def test_no_secret_means_no_token_route(serve: Serve) -> None:
    """Without a secret only /postbacks exists."""
    client = await serve()
    assert (await client.post("/postbacks/anything", data=body())).status == 404
    with pytest.raises(ValueError, match="empty secret"):
        make_postback_app(secret="")


async def test_restart_keeps_deduplicating(serve: Serve, tmp_path: Path) -> None:
    """A new receiver on the same file knows what was stored; a torn last line is cut."""
    out = tmp_path / "n.jsonl"
    first = await serve(out=out)
    for n in (note("N101"), note("N102")):
        assert (await first.post("/postbacks", data=body(n))).status == 200
    await first.close()
    out.write_bytes(out.read_bytes() + b'{"code": "N1')  # a crash in the middle of a write
    got: list[Notification] = []

    async def collect(n: Notification) -> None:
        got.append(n)

    second = await serve(out=out, on_notification=collect)
    assert receiver_of(second).stats.loaded_keys == 2
    for n in (note("N101"), note("N102"), note("N101", seconds=60)):
        assert (await second.post("/postbacks", data=body(n))).status == 200
    await receiver_of(second).drain()
    assert [r["code"] for r in stored(out)] == ["N101", "N102", "N101"]
    assert got == [note("N101", seconds=60)]


async def test_full_queue_answers_503_and_stores_nothing(serve: Serve, tmp_path: Path) -> None:
    """With the callback stuck and the queue full, 503 (not stored); accepted once it drains."""
    out, release = tmp_path / "n.jsonl", asyncio.Event()

    async def stuck(_n: Notification) -> None:
        await release.wait()

    client = await serve(out=out, on_notification=stuck, queue_size=1)
    statuses = []
    for second in range(4):
        statuses.append((await client.post("/postbacks", data=body(note(seconds=second)))).status)
        await asyncio.sleep(0.01)
    assert statuses == [200, 200, 503, 503]  # one in the callback, one queued
    assert len(stored(out)) == 2
    release.set()
    await receiver_of(client).drain()
    assert (await client.post("/postbacks", data=body(note(seconds=2)))).status == 200
    assert (len(stored(out)), receiver_of(client).stats.busy) == (3, 2)


async def test_callback_errors_do_not_stop_the_receiver(serve: Serve) -> None:
    """A callback that raises is logged and counted; later notifications still reach it."""
    got: list[str] = []

    async def flaky(n: Notification) -> None:
        got.append(n.code)
        if n.code == "N101":
            raise RuntimeError("boom")

    client = await serve(on_notification=flaky)
    for n in (note("N101"), note("N102")):
        assert (await client.post("/postbacks", data=body(n))).status == 200
    await receiver_of(client).drain()
    assert got == ["N101", "N102"]
    assert receiver_of(client).stats.callback_errors == 1


async def test_stop_drains_the_queue(tmp_path: Path) -> None:
    """Stopping the app lets the callback finish what is queued."""
    got: list[str] = []

    async def slow(n: Notification) -> None:
        await asyncio.sleep(0.01)
        got.append(n.code)

    client = TestClient(TestServer(make_postback_app(on_notification=slow), host="127.0.0.1"))
    await client.start_server()
    for second in range(5):
        await client.post("/postbacks", data=body(note(seconds=second)))
    await client.close()
    assert got == ["N102"] * 5


# --------------------------------------------------------------------------- arbitrary bytes


class ThreadedReceiver:
    """A receiver served from its own thread and event loop, for synchronous hypothesis tests."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ThreadedReceiver:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(make_postback_app(max_body=4096), access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def post(self, data: bytes, content_type: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request(
                "POST", "/postbacks", body=data, headers={"Content-Type": content_type}
            )
            return connection.getresponse().status
        finally:
            connection.close()


@pytest.fixture(scope="module")
def threaded() -> Iterator[ThreadedReceiver]:
    """One threaded receiver for the whole module."""
    with ThreadedReceiver() as server:
        yield server


XML_ISH = st.sampled_from(
    [
        b"",
        b"<POSTBACK>",
        b"</POSTBACK>",
        b"<CODE>N102</CODE>",
        b"xml=",
        b"<?xml version='1.0'?>",
        b"<NOTIFICATION ID='1'>",
        b"&",
        b"%3C",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=600),
        st.lists(st.one_of(XML_ISH, st.binary(max_size=8)), max_size=12).map(b"".join),
    ),
    content_type=st.sampled_from(
        ["text/xml", "application/x-www-form-urlencoded", "", "application/octet-stream"]
    ),
)
def test_arbitrary_bytes_never_crash_the_receiver(
    threaded: ThreadedReceiver, data: bytes, content_type: str
) -> None:
    """Any body is answered 200 or 400, and the receiver keeps serving."""
    assert threaded.post(data, content_type) in (200, 400)


def test_receiver_still_serves_after_fuzzing(threaded: ThreadedReceiver) -> None:
    """A valid postback is accepted after the fuzzing above."""
    assert threaded.post(body(note(seconds=12345)), "text/xml") == 200


# --------------------------------------------------------------------------- the CLI


def test_postbacks_serve_command(tmp_path: Path) -> None:
    """`postbacks serve` takes the secret from the environment and stores what it accepts."""
    out = tmp_path / "n.jsonl"
    env = {**os.environ, "POSTBACK_SECRET": "tok3n"}
    argv = [sys.executable, "-m", "skycore_async", "postbacks", "serve", "--port", "0"]
    argv += ["--out", str(out), "--secret-env", "POSTBACK_SECRET"]
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split()[-1]
            assert url.startswith("http://127.0.0.1:")
            assert "tok3n" not in url
            host_port = url.split("/")[2]
            connection = http.client.HTTPConnection(host_port, timeout=5)
            connection.request("POST", "/postbacks/tok3n", body=body())
            assert connection.getresponse().status == 200
            connection.close()
        finally:
            process.terminate()
            process.wait(5)
    assert [r["code"] for r in stored(out)] == ["N102"]


def test_serve_refuses_an_empty_secret_variable(tmp_path: Path) -> None:
    """--secret-env naming an unset variable is an error, not an open receiver."""
    from skycore_async.cli import main

    argv = [
        "postbacks",
        "serve",
        "--out",
        str(tmp_path / "n.jsonl"),
        "--secret-env",
        "NO_SUCH_VARIABLE_X",
    ]
    assert main(argv) == 2
