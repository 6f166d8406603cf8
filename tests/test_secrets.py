"""Secrets never leak, TLS is verified, plain http warns, the postback secret is constant-time.

The leak test runs a realistic session with distinctive credentials (single sends in both
methods, legacy USER/PASS, every kind of error, bulk runs with a journal, the ``bulk`` and
``send`` commands as subprocesses with DEBUG logging), keeps every artifact a user could see
or store (log records of every logger at DEBUG, warnings, stdout/stderr, ``str``/``repr``/
tracebacks of every error and result, the reprs of every library object reachable from the
client and the runs, the journal and results files) and searches all of it for the key, the
user name, the password and the password's MD5.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_faults import (
    RawServer,
    huge,
    raw_bytes,
    reset,
    respond,
)

import skycore_async
from skycore_async import (
    BulkMessage,
    ConnectError,
    Recipient,
    RetryPolicy,
    SkycoreClient,
    SkycoreError,
    Slide,
    Throttle,
    Timeouts,
)
from skycore_async.notifications import Notification, encode_notification
from skycore_async.receiver import make_postback_app
from skycore_async.testing import Emulator, EmulatorSettings
from skycore_async.transport import AiohttpTransport

KEY = "sk-canary-Q7ZX4M9P2L"
WRONG_KEY = "sk-canary-WR0NGK3Y8"
USER = "canary-user-J5T"
PASSWORD = "canary-pw-V3N6"
WRONG_PASSWORD = "canary-pw-BAD2"
SECRETS = {
    "api key": KEY,
    "wrong api key": WRONG_KEY,
    "user": USER,
    "password": PASSWORD,
    "password md5": hashlib.md5(PASSWORD.encode()).hexdigest(),
    "wrong password": WRONG_PASSWORD,
    "wrong password md5": hashlib.md5(WRONG_PASSWORD.encode()).hexdigest(),
}
MMS_ID = 35674
BLACKLISTED = "16505550000"
SHORT = Timeouts(connect=0.3, read=0.3)
LOGGERS = ("", "skycore_async", "aiohttp", "aiohttp.client", "aiohttp.internal",
           "aiohttp.server", "aiohttp.access", "aiohttp.web", "asyncio")  # fmt: skip


def leaks(artifacts: dict[str, str]) -> list[tuple[str, str]]:
    """(artifact, secret) for every artifact that contains a secret (case-insensitive)."""
    return [
        (name, label)
        for name, text in artifacts.items()
        for label, secret in SECRETS.items()
        if secret.lower() in text.lower()
    ]


# ---------------------------------------------------------------------- capturing


class LogCapture(logging.Handler):
    """Every record, formatted with its traceback, plus its raw arguments."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))


@pytest.fixture
def debug_logs() -> Iterator[LogCapture]:
    """Every logger (the library's, aiohttp's, asyncio's) at DEBUG into one capture."""
    capture = LogCapture()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(capture)
    try:
        yield capture
    finally:
        logging.getLogger().removeHandler(capture)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _ours(value: object) -> bool:
    return type(value).__module__.startswith("skycore_async")


def _attributes(obj: object) -> Iterator[object]:
    yield from getattr(obj, "__dict__", {}).values()
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name) and not name.startswith("__"):
                yield getattr(obj, name)


def reprs(*roots: object, depth: int = 4) -> list[str]:
    """``repr`` and ``str`` of every library object reachable from ``roots`` by attributes
    (and one level into containers); stored strings and bytes themselves are not shown."""
    out: list[str] = []
    seen: set[int] = set()
    stack = [(root, 0) for root in roots]
    while stack:
        obj, level = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out += [repr(obj), str(obj)]
        if level >= depth:
            continue
        for value in _attributes(obj):
            items = value.values() if isinstance(value, dict) else value
            if isinstance(items, list | tuple | set | frozenset | type({}.values())):
                stack += [(item, level + 1) for item in items if _ours(item)]
            elif _ours(value):
                stack.append((value, level + 1))
    return out


def read_files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (journals, results), by name."""
    return {
        f"file {path.name}": path.read_bytes().decode("latin-1")
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def describe_error(error: BaseException) -> str:
    """Everything an error shows: str, repr, the chained traceback, its data attributes."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for name in ("info", "to", "field", "message", "code"):
        parts.append(repr(getattr(error, name, None)))
    for name in ("body", "raw"):
        data = getattr(error, name, b"")
        parts.append(data.decode("latin-1") if isinstance(data, bytes) else repr(data))
    return "\n".join(parts)


@attrs.define
class Session:
    """Collects artifacts under names, and which error types were seen."""

    artifacts: dict[str, str] = attrs.field(factory=dict)
    errors: set[str] = attrs.field(factory=set)
    results: int = 0

    def add(self, name: str, *texts: str) -> None:
        self.artifacts[name] = self.artifacts.get(name, "") + "\n".join(texts)

    async def call(self, name: str, work: Awaitable[Any]) -> None:
        """Await ``work``; keep what it returned or raised."""
        try:
            result = await work
        except (SkycoreError, ValueError) as error:
            self.errors.add(type(error).__name__)
            self.add(f"error: {name}", describe_error(error))
        else:
            self.results += 1
            raw = getattr(result, "raw", b"")
            self.add(f"result: {name}", repr(result), str(result), raw.decode("latin-1"))


# ---------------------------------------------------------------------- the session


def emulator_settings() -> EmulatorSettings:
    """An account with the canary key and the canary USER/PASS."""
    return EmulatorSettings(
        seed=3,
        api_keys={KEY},
        users={USER: SECRETS["password md5"]},
        blacklist={BLACKLISTED},
    )


async def single_sends(session: Session, emu: Emulator, client: SkycoreClient, tag: str) -> None:
    """Successes and every server-side and client-side error, through one client."""
    settings = emu.settings
    send = client.send_saved_mms
    await session.call(f"{tag} send", send(to="16501234123", mms_id=MMS_ID, from_="60856",
                                           client_reference="ref-1", data={"name": "Ann"}))  # fmt: skip
    await session.call(f"{tag} sms", client.send_sms(to="16501234124", from_="60856", text="hi"))
    await session.call(f"{tag} ids", client.get_mms_ids())
    await session.call(
        f"{tag} save", client.save_mms(name="n", subject="s", slides=[Slide(text="t")])
    )
    await session.call(f"{tag} blacklisted", send(to=BLACKLISTED, mms_id=MMS_ID, from_="60856"))
    await session.call(f"{tag} unknown template", send(to="16501234125", mms_id=1, from_="60856"))
    await session.call(f"{tag} invalid number", send(to="12", mms_id=MMS_ID, from_="60856"))
    await session.call(f"{tag} long reference", send(to="16501234126", mms_id=MMS_ID,
                                                     from_="60856", client_reference="x" * 65))  # fmt: skip
    faults: list[tuple[str, dict[str, Any]]] = [
        ("drop after accept", {"drop_after_accept": 1.0}),
        ("drop before accept", {"drop_before_accept": 1.0}),
        ("truncated", {"truncated_after_accept": 1.0}),
        ("html 502", {"html_error_rate": 1.0}),
        ("E503", {"error_rates": {"E503": 1.0}}),
        ("E113", {"error_rates": {"E113": 1.0}}),
        ("E120", {"quota": 0}),
    ]
    for name, changes in faults:
        fresh = attrs.evolve(settings, **changes)
        emu.settings = fresh
        await session.call(f"{tag} {name}", send(to="16501234127", mms_id=MMS_ID, from_="60856"))
        emu.settings = settings
    emu.settings = attrs.evolve(settings, latency=2.0)
    slow = client.with_options(timeouts=SHORT)
    await session.call(f"{tag} timeout", slow.send_saved_mms(to="16501234128", mms_id=MMS_ID,
                                                             from_="60856"))  # fmt: skip
    emu.settings = settings
    session.add(f"reprs: {tag}", *reprs(client, slow, client.throttle, client.throttle.stats,
                                        client.limits, client.build_request("getMmsIds", {}),
                                        client.encode(client.build_request("getMmsIds", {}))))  # fmt: skip


RAW_FAULTS = {
    "rst": reset(reads_request=True),
    "not http": raw_bytes(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
    "short body": raw_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n<RESPONSE>"),
    "redirect": respond(307, b"", headers=[("Location", "/elsewhere")]),
    "huge": huge(chunked=True),
    "empty": respond(body=b""),
    "echoing 400": respond(400, b"<html>bad request</html>", content_type="text/html"),
}


async def raw_faults(session: Session, make: Callable[[str], SkycoreClient], tag: str) -> str:
    """Transport faults the emulator cannot make; returns what the server read (a control)."""
    wire = ""
    for name, behaviour in RAW_FAULTS.items():
        async with RawServer([behaviour]).running() as server, make(server.url) as client:
            await session.call(f"{tag} raw {name}", client.get_mms_ids())
            await session.call(f"{tag} raw {name} send", client.send_saved_mms(
                to="16501234129", mms_id=MMS_ID, from_="60856"))  # fmt: skip
        wire += b"".join(server.requests).decode("latin-1")
    return wire


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


async def bulk_runs(session: Session, client: SkycoreClient, emu: Emulator, tmp: Path) -> None:
    """A journaled run with faults, personalised and plain recipients; then a fatal one."""
    emu.settings.drop_after_accept = 0.3
    emu.settings.error_rates = {"E503": 0.2}
    recipients: list[Any] = [f"1650777{n:04d}" for n in range(30)]
    recipients += [Recipient("16508880001", data={"name": "Bo"}, client_reference="r-1"),
                   "12", BLACKLISTED, "16507770001"]  # fmt: skip
    message = BulkMessage.saved_mms(mms_id=MMS_ID, from_="60856", fallback_sms_text="See it")
    progress: list[str] = []
    run = client.send_bulk(message, recipients, journal=tmp / "run.journal", batch_size=8,
                           on_progress=lambda p: progress.append(repr(p)),
                           progress_interval=0.01)  # fmt: skip
    async with run:
        async for batch in run:
            session.add("bulk batches", repr(batch), str(batch),
                        *(str(o.to_record()) for o in batch.outcomes))  # fmt: skip
    session.add("bulk objects", *reprs(run, run.progress), *progress)
    emu.settings.drop_after_accept = 0.0
    emu.settings.error_rates = {}
    bad = SkycoreClient(api_key=WRONG_KEY, base_url=emu.url, retry=RetryPolicy.testing(),
                        throttle=Throttle.testing())  # fmt: skip
    async with bad:
        fatal = bad.send_bulk(message, recipients[:5], journal=tmp / "fatal.journal")
        await session.call("bulk fatal", _drain(fatal))
        session.add("bulk fatal objects", *reprs(fatal, bad))


async def _drain(run: Any) -> int:
    async with run:
        return sum([len(batch) async for batch in run])


async def in_process_session(tmp: Path) -> tuple[Session, str]:
    """Everything but the CLI; returns the session and the raw bytes servers read."""
    session = Session()
    testing = {"retry": RetryPolicy.testing(attempts=2), "throttle": Throttle.testing()}
    wire = ""
    async with Emulator(emulator_settings()) as emu:
        emu.add_template(MMS_ID)
        for method in ("xml", "get"):
            async with SkycoreClient(api_key=KEY, base_url=emu.url, method=method,
                                     **testing) as client:  # fmt: skip
                await single_sends(session, emu, client, f"key/{method}")
            async with SkycoreClient(user=USER, password=PASSWORD, base_url=emu.url,
                                     method=method, **testing) as legacy:  # fmt: skip
                await single_sends(session, emu, legacy, f"legacy/{method}")
            for name, options in (
                ("wrong key", {"api_key": WRONG_KEY}),
                ("wrong password", {"user": USER, "password": WRONG_PASSWORD}),
            ):
                async with SkycoreClient(base_url=emu.url, method=method, **options,
                                         **testing) as wrong:  # fmt: skip
                    await session.call(f"{name}/{method}", wrong.get_mms_ids())
            for tag, auth in (
                ("key", {"api_key": KEY}),
                ("legacy", {"user": USER, "password": PASSWORD}),
            ):

                def make(
                    url: str, auth: dict[str, str] = auth, method: str = method
                ) -> SkycoreClient:
                    return SkycoreClient(
                        base_url=url, method=method, timeouts=SHORT, **auth, **testing
                    )

                wire += await raw_faults(session, make, f"{tag}/{method}")
            for url in (closed_port_url(), "http:///no-host"):
                async with SkycoreClient(api_key=KEY, base_url=url, method=method, **testing) as c:
                    await session.call(f"unreachable {url}/{method}", c.get_mms_ids())
        async with SkycoreClient(api_key=KEY, base_url=emu.url, **testing) as client:
            await bulk_runs(session, client, emu, tmp)
    return session, wire


async def test_no_artifact_of_a_session_holds_a_credential(
    tmp_path: Path, debug_logs: LogCapture
) -> None:
    """Logs, warnings, errors, results, reprs and files of a whole session are clean."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session, wire = await in_process_session(tmp_path)
    session.add("logs", *debug_logs.lines)
    session.add("warnings", *(str(w.message) for w in caught))
    session.artifacts.update(read_files(tmp_path))
    # The search matches how secrets travel: the raw servers read the key, the user and the
    # MD5 (the password itself never travels; the wrong ones only went to the emulator).
    assert {label for label, secret in SECRETS.items() if secret not in wire} == {
        "password",
        "wrong api key",
        "wrong password",
        "wrong password md5",
    }
    assert leaks(session.artifacts) == []
    # ...and the session really did produce what was searched.
    assert {"AuthenticationError", "ConnectionLostError", "ProtocolError", "ResponseTimeoutError",
            "ConnectError", "ValidationError", "ServerError", "ThroughputExceededError",
            "QuotaExceededError", "RecipientError", "InvalidRequestError"} <= session.errors  # fmt: skip
    assert session.results >= 8
    assert "skycore_async" in debug_logs.names
    assert {"file run.journal", "file fatal.journal", "bulk batches"} <= set(session.artifacts)


# ---------------------------------------------------------------------- the CLI

CLI = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                    format="%(name)s %(levelname)s %(message)s")
for name in ("aiohttp", "aiohttp.client", "aiohttp.internal", "asyncio", "skycore_async"):
    logging.getLogger(name).setLevel(logging.DEBUG)
from skycore_async.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def run_cli(key: str, *args: str) -> tuple[int, str, str]:
    """``skycore-async ARGS`` in a subprocess with the key in SKYCORE_API_KEY, logging at DEBUG."""
    env = {**os.environ, "SKYCORE_API_KEY": key, "PYTHONWARNINGS": "always"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLI, *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


async def test_cli_output_and_files_hold_no_credential(tmp_path: Path) -> None:
    """The bulk and send commands at DEBUG, with faults, a wrong key: nothing shows a key."""
    lines = ["to"] + [f"1650666{n:04d}" for n in range(40)] + ["12", BLACKLISTED, "16506660001"]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    artifacts: dict[str, str] = {}
    settings = attrs.evolve(emulator_settings(), drop_after_accept=0.2,
                            error_rates={"E113": 0.05}, html_error_rate=0.05)  # fmt: skip
    async with Emulator(settings) as emu:
        emu.add_template(MMS_ID)
        common = ["--mms-id", str(MMS_ID), "--from", "60856", "--base-url", emu.url]
        runs = {
            "bulk": (KEY, ["bulk", *common, "--recipients", str(tmp_path / "list.csv"),
                           "--out", str(tmp_path / "results.jsonl"), "--batch-size", "7"]),
            "bulk, wrong key": (WRONG_KEY, ["bulk", *common, "--recipients",
                                            str(tmp_path / "list.csv"),
                                            "--out", str(tmp_path / "wrong.jsonl")]),
            "send, blacklisted": (KEY, ["send", *common, "--to", BLACKLISTED]),
        }  # fmt: skip
        finished = await asyncio.gather(*(run_cli(key, *args) for key, args in runs.values()))
    codes = {}
    for name, (code, out, err) in zip(runs, finished, strict=True):
        codes[name] = code
        artifacts[f"{name} stdout"], artifacts[f"{name} stderr"] = out, err
    artifacts.update(read_files(tmp_path))
    assert codes == {"bulk": 0, "bulk, wrong key": 2, "send, blacklisted": 1}, artifacts[
        "bulk stderr"
    ][-2000:]
    assert leaks(artifacts) == []
    assert len(artifacts["file results.jsonl"].splitlines()) == 43
    assert "results.jsonl.journal" in " ".join(artifacts)
    assert "skycore_async DEBUG" in artifacts["bulk stderr"]
    assert "E104" in artifacts["bulk, wrong key stderr"]


# ---------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (skips, saying why, without openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a certificate for the TLS tests")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_emulator(certificate: tuple[Path, Path]) -> AsyncIterator[tuple[Emulator, str]]:
    """The emulator's app behind HTTPS on 127.0.0.1 with the self-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    emu = Emulator(EmulatorSettings(api_keys={KEY}))
    emu.add_template(MMS_ID)
    runner = web.AppRunner(emu.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield emu, f"https://127.0.0.1:{port}/API/wxml/1.3/index.php"
    finally:
        await runner.cleanup()


async def test_tls_certificates_are_verified_by_default(
    tls_emulator: tuple[Emulator, str], certificate: tuple[Path, Path]
) -> None:
    """An untrusted certificate is a ConnectError (nothing sent); trusting it explicitly works."""
    emu, url = tls_emulator
    testing = {"retry": RetryPolicy.testing(attempts=1), "throttle": Throttle.testing()}
    async with SkycoreClient(api_key=KEY, base_url=url, **testing) as client:
        with pytest.raises(ConnectError, match=r"(?i)certificate") as caught:
            await client.send_saved_mms(to="16501234123", mms_id=MMS_ID, from_="60856")
    assert not caught.value.ambiguous
    assert emu.requests_received == 0
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    async with SkycoreClient(api_key=KEY, base_url=url, transport=AiohttpTransport(ssl=trusting),
                             **testing) as client:  # fmt: skip
        result = await client.send_saved_mms(to="16501234123", mms_id=MMS_ID, from_="60856")
    assert result.tracking_id == emu.accepted[0].tracking_id


def test_no_code_path_turns_verification_off() -> None:
    """Nothing in the package disables certificate checks; only a caller's ``ssl=`` can."""
    package = Path(skycore_async.__file__).parent
    forbidden = ("ssl=False", "verify_ssl", "CERT_NONE", "check_hostname = False",
                 "_create_unverified_context")  # fmt: skip
    for source in package.glob("*.py"):
        text = source.read_text()
        assert not [word for word in forbidden if word in text], source.name


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("http://api.example.com/index.php", True),
        ("http://10.0.0.5:8080/", True),
        ("http://127.0.0.1.nip.io/", True),
        ("http://localhost.example.com/", True),
        ("https://api.example.com/index.php", False),
        ("http://127.0.0.1:8080/", False),
        ("http://127.9.9.9/", False),
        ("http://localhost:8080/", False),
        ("http://LOCALHOST/", False),
        ("http://[::1]:8080/", False),
    ],
)
def test_plain_http_warns_unless_loopback(url: str, warns: bool) -> None:
    """The key would cross the network in clear: warn, pointing at the caller's line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SkycoreClient(api_key=KEY, base_url=url)
    assert [str(w.message) for w in caught if "unencrypted" in str(w.message)] == (
        [f"base_url {url!r} is plain http: the API key would travel unencrypted"] if warns else []
    )
    assert all(w.filename == __file__ for w in caught)


# ---------------------------------------------------------------------- postback secret


async def test_postback_secret_is_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wrong secrets are refused, the right one accepted, each through hmac.compare_digest."""
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    secret = "pb-secret-Z9"
    body = encode_notification_body()
    auth = {"Authorization": "Basic " + base64.b64encode(f"skycore:{secret}".encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"skycore:pb-secret-Z8").decode()}
    async with TestClient(TestServer(make_postback_app(secret=secret), host="127.0.0.1")) as http:
        statuses = [
            (await http.post(f"/postbacks/{secret}", data=body)).status,
            (await http.post("/postbacks/pb-secret-Z8", data=body)).status,
            (await http.post("/postbacks", data=body, headers=auth)).status,
            (await http.post("/postbacks", data=body, headers=wrong)).status,
        ]
    assert statuses == [200, 404, 200, 401]
    assert len(calls) == 4
    assert all(b == secret.encode() for _a, b in calls)


def encode_notification_body() -> bytes:
    """One delivery notification as Skycore posts it."""
    notification = Notification(
        origin="MMS_MT", code="N102", sent_as="MMS", status="Message Sent/Delivered",
        tracking_id="TU1TXzU5Nzg3OQ==", to="16501112222", mms_id="35674",
        timestamp=datetime(2024, 6, 7, 7, 27, 29, tzinfo=UTC),
    )  # fmt: skip
    return encode_notification(notification)
