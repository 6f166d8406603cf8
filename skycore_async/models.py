"""Frozen value objects: what callers pass in (slides, custom text, vCards) and get back.

Pure: no I/O. Each input value knows its canonical wire shape (``to_fields``); each result is
built from a decoded :class:`~skycore_async.protocol.ApiResponse` (``from_reply``).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .protocol import ApiResponse

__all__ = [
    "CampaignSendResult",
    "CustomText",
    "DynamicVCard",
    "LabeledValue",
    "MmsIdsResult",
    "SaveResult",
    "SendResult",
    "Slide",
]

Label = Literal["work", "home"]


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


@attrs.frozen
class Slide:
    """One MMS slide for ``send_mms`` / ``save_mms``.

    Each media attribute is the full absolute URL of the file. Allowed combinations follow the
    digest: image+audio is fine; video takes only text beside it; an object (vCard, iCal, PDF,
    Passbook) stands alone with text. ``duration`` is in seconds.
    """

    text: str | None = None
    image: str | None = None
    audio: str | None = None
    video: str | None = None
    vcard: str | None = None
    ical: str | None = None
    pdf: str | None = None
    passbook: str | None = None
    duration: int | None = None

    def to_fields(self) -> dict[str, Any]:
        """The canonical slide dict (see :mod:`skycore_async.fields`)."""
        fields: dict[str, Any] = {}
        for kind in ("image", "audio", "video", "vcard", "ical", "pdf", "passbook"):
            url = getattr(self, kind)
            if url is not None:
                fields[kind.upper()] = {"URL": url}
        if self.text is not None:
            fields["TEXT"] = self.text
        if self.duration is not None:
            fields["DURATION"] = str(self.duration)
        return fields


@attrs.frozen
class CustomText:
    """Replacement text for one slide of a saved template (``CUSTOMTEXT``)."""

    slide: int
    value: str

    def to_fields(self) -> dict[str, str]:
        """The canonical ``{"VALUE", "SLIDE"}`` dict."""
        return {"VALUE": self.value, "SLIDE": str(self.slide)}


@attrs.frozen
class LabeledValue:
    """A vCard phone number, e-mail address or postal address with its label."""

    value: str
    label: Label | None = None


def _labeled(items: tuple[LabeledValue, ...], key: str) -> list[dict[str, str]]:
    out = []
    for item in items:
        entry = {key: item.value}
        if item.label is not None:
            entry["LABEL"] = item.label
        out.append(entry)
    return out


def _to_labeled(values: Any) -> tuple[LabeledValue, ...]:
    return tuple(v if isinstance(v, LabeledValue) else LabeledValue(str(v)) for v in values)


@attrs.frozen
class DynamicVCard:
    """A vCard generated per recipient and attached to the template's last slide (§3.2).

    Up to 4 phones, e-mails and addresses; labels ``work`` or ``home`` (default ``work``);
    names may contain letters, digits, spaces and dots; the photo must be gif, jpg or png.
    """

    first_name: str | None = None
    last_name: str | None = None
    suffix: str | None = None
    organization: str | None = None
    title: str | None = None
    photo_url: str | None = None
    note: str | None = None
    phones: tuple[LabeledValue, ...] = attrs.field(default=(), converter=_to_labeled)
    emails: tuple[LabeledValue, ...] = attrs.field(default=(), converter=_to_labeled)
    addresses: tuple[LabeledValue, ...] = attrs.field(default=(), converter=_to_labeled)

    def to_fields(self) -> dict[str, Any]:
        """The canonical ``DYNAMICVCARD`` dict."""
        name = {
            k: v
            for k, v in (
                ("FIRSTNAME", self.first_name),
                ("LASTNAME", self.last_name),
                ("SUFFIX", self.suffix),
            )
            if v is not None
        }
        fields: dict[str, Any] = {"NAME": name} if name else {}
        for key, value in (
            ("ORGANIZATION", self.organization),
            ("TITLE", self.title),
            ("PHOTOURL", self.photo_url),
            ("NOTE", self.note),
        ):
            if value is not None:
                fields[key] = value
        for key, inner, items in (
            ("PHONE", "NUMBER", self.phones),
            ("EMAIL", "ID", self.emails),
            ("PHYSICALADDRESS", "ADDRESS", self.addresses),
        ):
            if items:
                fields[key] = _labeled(items, inner)
        return fields


@attrs.frozen
class SendResult:
    """An accepted send (``sendSavedMMS``, ``sendMMS``, ``sendSMS``).

    Attributes:
        tracking_id: the opaque id that delivery postbacks refer to.
        mms_id: the template id (sendMMS also returns the id it saved); None for SMS.
        to: the recipient as echoed by Skycore.
        from_: the sender actually used (Skycore may substitute a country's default code).
        status_details: e.g. "MMS request accepted and queued for delivery".
        attempts: how many HTTP attempts this call took.
        raw: the reply bytes.
    """

    tracking_id: str
    mms_id: str | None = None
    to: str | None = None
    from_: str | None = None
    status_details: str | None = None
    attempts: int = 1
    raw: bytes = attrs.field(default=b"", repr=False, eq=False)

    @classmethod
    def from_reply(cls, reply: ApiResponse, attempts: int = 1) -> SendResult:
        """Build from a successful reply; ProtocolError-free: missing fields become None."""
        return cls(
            tracking_id=reply.get("TRACKINGID") or "",
            mms_id=reply.get("MMSID"),
            to=reply.get("TO"),
            from_=reply.get("FROM"),
            status_details=reply.get("STATUSDETAILS"),
            attempts=attempts,
            raw=reply.raw,
        )


@attrs.frozen
class CampaignSendResult:
    """An accepted ``sendSavedMMSCampaign``: one scheduled send to a whole campaign."""

    scheduled_id: str
    mms_id: str | None = None
    attempts: int = 1
    raw: bytes = attrs.field(default=b"", repr=False, eq=False)

    @classmethod
    def from_reply(cls, reply: ApiResponse, attempts: int = 1) -> CampaignSendResult:
        """Build from a successful reply."""
        return cls(
            scheduled_id=reply.get("SCHEDULEDID") or "",
            mms_id=reply.get("MMSID"),
            attempts=attempts,
            raw=reply.raw,
        )


@attrs.frozen
class SaveResult:
    """A stored template (``saveMMS``). Audio/video templates are usable after postback N003."""

    mms_id: str
    attempts: int = 1
    raw: bytes = attrs.field(default=b"", repr=False, eq=False)

    @classmethod
    def from_reply(cls, reply: ApiResponse, attempts: int = 1) -> SaveResult:
        """Build from a successful reply."""
        return cls(mms_id=reply.get("MMSID") or "", attempts=attempts, raw=reply.raw)


@attrs.frozen
class MmsIdsResult:
    """The account's template ids (``getMmsIds``)."""

    mms_ids: tuple[str, ...]
    attempts: int = 1
    raw: bytes = attrs.field(default=b"", repr=False, eq=False)

    @classmethod
    def from_reply(cls, reply: ApiResponse, attempts: int = 1) -> MmsIdsResult:
        """Build from a successful reply; ``MMSIDS`` is a comma-separated list."""
        text = reply.get("MMSIDS") or ""
        ids = tuple(part.strip() for part in text.split(",") if part.strip())
        return cls(mms_ids=ids, attempts=attempts, raw=reply.raw)


def optional_str(value: object) -> str | None:
    """``str(value)`` unless it is None (used when building canonical fields)."""
    return _opt(value)
