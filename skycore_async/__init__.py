"""skycore-async: asyncio client, bulk-send engine, postback receiver and emulator for Skycore MMS.

Quick start::

    from skycore_async import SkycoreClient

    async with SkycoreClient(api_key=...) as client:
        result = await client.send_saved_mms(to="16501234123", mms_id=35674, from_="60856")
        print(result.tracking_id)

The emulator for tests lives in :mod:`skycore_async.testing`.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .bulk import BulkMessage, BulkRun
from .client import DEFAULT_BASE_URL, SkycoreClient
from .config import Limits, RetryPolicy, Timeouts
from .errors import (
    AccountError,
    ApiError,
    AuthenticationError,
    BillingError,
    CallIntervalError,
    ClientStateError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    ErrorClass,
    InvalidRequestError,
    OutcomeUnknownError,
    ProtocolError,
    QuotaExceededError,
    RecipientError,
    ResponseTimeoutError,
    ServerError,
    SkycoreError,
    ThrottledError,
    ThrottleUnavailableError,
    ThroughputExceededError,
    TransportError,
    ValidationError,
)
from .journal import JournalMismatchError
from .models import (
    CampaignSendResult,
    CustomText,
    DynamicVCard,
    LabeledValue,
    MmsIdsResult,
    SaveResult,
    SendResult,
    Slide,
)
from .notifications import Notification, PostbackCode, decode_notifications
from .outcomes import Outcome, Progress, ResultBatch
from .receiver import make_postback_app, serve_postbacks
from .recipients import Recipient, RowError, read_csv, read_jsonl, read_recipients
from .reconcile import Reconciler, Report, reconcile_files, render_text
from .retry import RetryEvent
from .throttle import Throttle, ThrottleEvent, ThrottleLike, ThrottleStats
from .transport import HttpRequest, HttpResponse, MockTransport

if TYPE_CHECKING:
    from .campaign import (
        CampaignError,
        CampaignStatus,
        CampaignWorker,
        campaign_results,
        campaign_status,
        load_campaign,
    )
    from .redis_throttle import RedisThrottle, account_from_api_key

#: Names served by optional extras, imported on first use: ``import skycore_async`` works
#: without them installed.
_LAZY = {
    "RedisThrottle": "redis_throttle",
    "account_from_api_key": "redis_throttle",
    **dict.fromkeys(
        ("CampaignError", "CampaignStatus", "CampaignWorker", "campaign_results",
         "campaign_status", "load_campaign"),
        "campaign",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(import_module(f".{module}", __name__), name)
    except ImportError as error:
        if not (error.name or "").startswith("redis"):
            raise
        raise ImportError(
            f"skycore_async.{name} needs the redis extra: pip install 'skycore-async[redis]'"
        ) from error
    globals()[name] = value
    return value


try:
    __version__ = version("skycore-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_BASE_URL",
    "AccountError",
    "ApiError",
    "AuthenticationError",
    "BillingError",
    "BulkMessage",
    "BulkRun",
    "CallIntervalError",
    "CampaignError",
    "CampaignSendResult",
    "CampaignStatus",
    "CampaignWorker",
    "ClientStateError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "CustomText",
    "DynamicVCard",
    "ErrorClass",
    "HttpRequest",
    "HttpResponse",
    "InvalidRequestError",
    "JournalMismatchError",
    "LabeledValue",
    "Limits",
    "MmsIdsResult",
    "MockTransport",
    "Notification",
    "Outcome",
    "OutcomeUnknownError",
    "PostbackCode",
    "Progress",
    "ProtocolError",
    "QuotaExceededError",
    "Recipient",
    "RecipientError",
    "Reconciler",
    "RedisThrottle",
    "Report",
    "ResponseTimeoutError",
    "ResultBatch",
    "RetryEvent",
    "RetryPolicy",
    "RowError",
    "SaveResult",
    "SendResult",
    "ServerError",
    "SkycoreClient",
    "SkycoreError",
    "Slide",
    "Throttle",
    "ThrottleEvent",
    "ThrottleLike",
    "ThrottleStats",
    "ThrottleUnavailableError",
    "ThrottledError",
    "ThroughputExceededError",
    "Timeouts",
    "TransportError",
    "ValidationError",
    "__version__",
    "account_from_api_key",
    "campaign_results",
    "campaign_status",
    "decode_notifications",
    "load_campaign",
    "make_postback_app",
    "read_csv",
    "read_jsonl",
    "read_recipients",
    "reconcile_files",
    "render_text",
    "serve_postbacks",
]
