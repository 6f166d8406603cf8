"""Keyword arguments -> canonical fields, one table per action. Pure.

The client's methods keep explicit, typed signatures for users and type checkers; their
bodies hand ``locals()`` to :func:`to_fields`, so the mapping from ``snake_case`` keyword to
documented tag lives in exactly one place and is shared with the bulk engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from .models import CustomText, DynamicVCard, Slide
from .validation import normalize_number

__all__ = ["ACTION_PARAMS", "to_fields"]

Converter = Callable[[Any], Any]


def _str(value: Any) -> str:
    return str(value)


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


def _true_false(value: Any) -> str:
    return "true" if value else "false"


def _custom_text(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [CustomText(slide=1, value=value).to_fields()]
    if isinstance(value, Mapping):
        return [CustomText(slide=int(k), value=str(v)).to_fields() for k, v in value.items()]
    return [item.to_fields() for item in value]


def _data(value: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()}


def _vcard(value: DynamicVCard) -> dict[str, Any]:
    return value.to_fields()


def _slides(value: Any) -> list[dict[str, Any]]:
    return [slide.to_fields() if isinstance(slide, Slide) else dict(slide) for slide in value]


def _same(value: Any) -> Any:
    return value


_SENDER: Final[dict[str, tuple[str, Converter]]] = {
    "to": ("TO", normalize_number),
    "from_": ("FROM", _same),
    "from_mask": ("FROM_MASK", _same),
    "operator_id": ("OPERATORID", _str),
    "campaign_ref": ("CAMPAIGNREF", _str),
}

#: Per action: keyword -> (canonical field, converter). Order is the wire order.
ACTION_PARAMS: Final[dict[str, dict[str, tuple[str, Converter]]]] = {
    "sendSavedMMS": {
        "mms_id": ("MMSID", _str),
        **_SENDER,
        "ddm_title": ("DDMTITLE", _same),
        "ddm_text": ("DDMTEXT", _same),
        "ddm_timeout": ("DDMTIMEOUT", _str),
        "ddm_force": ("DDMFORCE", _true_false),
        "custom_text": ("CUSTOMTEXT", _custom_text),
        "custom_subject": ("CUSTOMSUBJECT", _same),
        "data": ("DATA", _data),
        "fallback_sms_text": ("FALLBACKSMSTEXT", _same),
        "disable_fallback_sms": ("DISABLEFALLBACKSMS", _yes_no),
        "disable_fallback_sms_link": ("DISABLEFALLBACKSMSLINK", _yes_no),
        "force_send_as_sms": ("FORCE_SEND_AS_SMS", _true_false),
        "force_pass_as_link": ("FORCEPASSASLINK", _yes_no),
        "client_reference": ("CLIENT_REFERENCE", _same),
        "dynamic_vcard": ("DYNAMICVCARD", _vcard),
        "service_id": ("SERVICEID", _same),
    },
    "sendSavedMMSCampaign": {
        "mms_id": ("MMSID", _str),
        "to_campaign": ("TOCAMPAIGN", _str),
    },
    "sendMMS": {
        **_SENDER,
        "subject": ("SUBJECT", _same),
        "name": ("NAME", _same),
        "slides": ("SLIDE", _slides),
        "fallback_sms_text": ("FALLBACKSMSTEXT", _same),
        "disable_fallback_sms_link": ("DISABLEFALLBACKSMSLINK", _yes_no),
        "service_id": ("SERVICEID", _same),
    },
    "saveMMS": {
        "subject": ("SUBJECT", _same),
        "name": ("NAME", _same),
        "slides": ("SLIDE", _slides),
    },
    "sendSMS": {
        **_SENDER,
        "text": ("TEXT", _same),
    },
    "getMmsIds": {},
}


def to_fields(action: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical fields for ``action`` from keyword arguments; ``None`` values are left out.

    Unrelated names in ``arguments`` (``self``, ``legacy_layout``) are ignored.

    Raises:
        ValidationError: a number cannot be normalised (code E110).
    """
    table = ACTION_PARAMS[action]
    return {
        field: convert(arguments[name])
        for name, (field, convert) in table.items()
        if arguments.get(name) is not None
    }


def check_names(action: str, names: Mapping[str, Any]) -> None:
    """Raise TypeError for keywords ``action`` does not take (for ``**kwargs`` entry points)."""
    unknown = set(names) - set(ACTION_PARAMS[action])
    if unknown:
        raise TypeError(f"{action} takes no argument(s) {', '.join(sorted(unknown))}")
