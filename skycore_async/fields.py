"""Canonical field names, dialect spellings and the request representation shared by all layers.

Pure: no I/O. A request travels through the library as an :class:`ApiRequest`: an action name
and a mapping of *canonical* field names (the Skycore 1.3 upper-case tags, e.g. ``MMSID``,
``API_KEY``, ``CLIENT_REFERENCE``) to values:

* leaves are ``str``;
* ``DATA`` is a ``dict[str, str]`` (merge-tag name to value, names as the caller gave them);
* ``CUSTOMTEXT`` is a list of ``{"VALUE": str, "SLIDE": str}``;
* ``SLIDE`` is a list of slide dicts: ``{"TEXT": str, "DURATION": str, "IMAGE": {"URL": str}, ...}``
  with media keys from :data:`SLIDE_MEDIA`;
* ``DYNAMICVCARD`` is ``{"NAME": {"FIRSTNAME", "LASTNAME", "SUFFIX"}, "ORGANIZATION", "TITLE",
  "PHOTOURL", "NOTE", "PHONE": [{"NUMBER", "LABEL"}], "EMAIL": [{"ID", "LABEL"}],
  "PHYSICALADDRESS": [{"ADDRESS", "LABEL"}]}``.

Incoming names are matched by :func:`canon`: case-insensitive, with ``-`` and ``_`` ignored, and
with the hyphenated dialect's renamed fields (``ddm-message-text``, ``message-subject``, ...)
and older synonyms (``SPID``) mapped to their canonical 1.3 name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

__all__ = [
    "ACTIONS",
    "SECRET_FIELDS",
    "SLIDE_MEDIA",
    "ApiRequest",
    "Dialect",
    "Method",
    "canon",
    "canon_action",
    "param_name",
    "wire_name",
]

Dialect = Literal["skycore", "hyphenated"]
Method = Literal["xml", "get"]

#: The actions this library sends, spelled as documented.
ACTIONS: Final = (
    "sendSavedMMS",
    "sendSavedMMSCampaign",
    "sendMMS",
    "saveMMS",
    "sendSMS",
    "getMmsIds",
)

#: Media children of a slide; each wraps one ``URL``.
SLIDE_MEDIA: Final = ("IMAGE", "AUDIO", "VIDEO", "VCARD", "ICAL", "PDF", "PASSBOOK")

# Canonical tag -> hyphenated-dialect tag, where it is not simply lower-case with '_' -> '-'.
_HYPHENATED: Final[dict[str, str]] = {
    "REQUEST": "request",
    "RESPONSE": "response",
    "API_KEY": "api-key",
    "MMSID": "mms-id",
    "OPERATORID": "operator-id",
    "SERVICEID": "service-id",
    "FALLBACKSMSTEXT": "fallback-sms-text",
    "DISABLEFALLBACKSMS": "disable-fallback-sms",
    "DISABLEFALLBACKSMSLINK": "disable-fallback-sms-link",
    "FORCE_SEND_AS_SMS": "force-send-as-sms",
    "FORCEPASSASLINK": "force-pass-as-link",
    "CUSTOMTEXT": "custom-text",
    "CUSTOMSUBJECT": "custom-subject",
    "DDMTEXT": "ddm-message-text",
    "DDMTITLE": "ddm-message-subject",
    "DDMTIMEOUT": "ddm-message-timeout",
    "DDMFORCE": "ddm-force",
    "SUBJECT": "message-subject",
    "TEXT": "message-text",
    "TRACKINGID": "tracking-id",
    "SCHEDULEDID": "scheduled-id",
    "ERRORCODE": "error-code",
    "ERRORINFO": "error-info",
    "STATUSDETAILS": "status-details",
    "CAMPAIGNREF": "campaign-ref",
    "TOCAMPAIGN": "to-campaign",
    "FROM_MASK": "from-mask",
    "CLIENT_REFERENCE": "client-reference",
    "DYNAMICVCARD": "dynamic-vcard",
    "MMSIDS": "mms-ids",
    "PHOTOURL": "photo-url",
    "PHYSICALADDRESS": "physical-address",
    "FIRSTNAME": "first-name",
    "LASTNAME": "last-name",
}

# Squashed spellings (upper-case, no '-' or '_') that name a different canonical field.
_ALIASES: Final[dict[str, str]] = {
    "DDMMESSAGETEXT": "DDMTEXT",
    "DDMMESSAGESUBJECT": "DDMTITLE",
    "DDMMESSAGETIMEOUT": "DDMTIMEOUT",
    "MESSAGESUBJECT": "SUBJECT",
    "MESSAGETEXT": "TEXT",
    "SPID": "OPERATORID",
    "CAMPAIGNID": "TOCAMPAIGN",
    "CUSTOMTITLE": "CUSTOMSUBJECT",
}

# Every canonical name that contains an underscore, keyed by its squashed form.
_UNDERSCORED: Final[dict[str, str]] = {
    name.replace("_", ""): name
    for name in ("API_KEY", "FORCE_SEND_AS_SMS", "CLIENT_REFERENCE", "FROM_MASK")
}

_ACTIONS_BY_KEY: Final[dict[str, str]] = {action.lower(): action for action in ACTIONS}


def canon(tag: str) -> str:
    """The canonical 1.3 name for any documented spelling of a tag.

    >>> canon("mms-id"), canon("api_key"), canon("ddm-message-text"), canon("Spid")
    ('MMSID', 'API_KEY', 'DDMTEXT', 'OPERATORID')
    """
    squashed = tag.strip().upper().replace("-", "").replace("_", "")
    return _ALIASES.get(squashed) or _UNDERSCORED.get(squashed) or squashed


def canon_action(action: str) -> str:
    """The documented spelling of an action name, matched case-insensitively."""
    key = action.strip().lower()
    return _ACTIONS_BY_KEY.get(key, action.strip())


def wire_name(tag: str, dialect: Dialect) -> str:
    """The tag as written on the wire in ``dialect``."""
    if dialect == "skycore":
        return tag
    return _HYPHENATED.get(tag) or tag.lower().replace("_", "-")


def param_name(tag: str) -> str:
    """The snake_case keyword argument that feeds a canonical field (for error messages)."""
    return _PARAMS.get(tag, tag.lower())


_PARAMS: Final[dict[str, str]] = {
    "MMSID": "mms_id",
    "FROM": "from_",
    "OPERATORID": "operator_id",
    "SERVICEID": "service_id",
    "CAMPAIGNREF": "campaign_ref",
    "TOCAMPAIGN": "to_campaign",
    "DDMTITLE": "ddm_title",
    "DDMTEXT": "ddm_text",
    "DDMTIMEOUT": "ddm_timeout",
    "DDMFORCE": "ddm_force",
    "CUSTOMTEXT": "custom_text",
    "CUSTOMSUBJECT": "custom_subject",
    "FALLBACKSMSTEXT": "fallback_sms_text",
    "DISABLEFALLBACKSMS": "disable_fallback_sms",
    "DISABLEFALLBACKSMSLINK": "disable_fallback_sms_link",
    "FORCEPASSASLINK": "force_pass_as_link",
    "DYNAMICVCARD": "dynamic_vcard",
    "SLIDE": "slides",
    "PASS": "password",
}


@attrs.frozen
class ApiRequest:
    """One API call in canonical form: what the encoder writes and the emulator reads.

    Attributes:
        action: the documented action name, e.g. ``"sendSavedMMS"``.
        fields: canonical field name to value (see the module docstring for shapes).
        legacy_content: for sendMMS/saveMMS, write slides in the 2014
            ``CONTENT/NAME/SEQUENCE/SLIDE duration=".."`` layout instead of flat ``SLIDE``.
    """

    action: str
    fields: Mapping[str, Any] = attrs.field(factory=dict)
    legacy_content: bool = False

    def get(self, name: str) -> Any:
        """The value of a canonical field, or None."""
        return self.fields.get(name)

    def __repr__(self) -> str:
        # Never show credentials: the API key and PASS travel in the body.
        shown = {k: ("***" if k in SECRET_FIELDS else v) for k, v in self.fields.items()}
        return f"ApiRequest(action={self.action!r}, fields={shown!r})"


#: Fields that carry credentials and must never be logged or shown.
SECRET_FIELDS: Final = frozenset({"API_KEY", "PASS", "USER"})
