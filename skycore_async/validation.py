"""Pre-flight validation of Skycore requests, shared by the client and the local emulator.

Pure: no I/O. :func:`validate_request` raises :class:`~skycore_async.errors.ValidationError`
for the first rule a request breaks, with the E-code the real service answers. The client calls it
before any network call; the emulator calls it on decoded requests, so it accepts any shape and
only ever raises ``ValidationError``. Rules and codes come from the protocol digest
(``skycore-api.md``); "§" below refers to its sections.

Conventions:

* ``None``, whitespace-only text and empty containers count as *absent* for required fields,
  slides and list items: an XML decoder cannot tell ``<TO/>`` from no ``TO``, so the client and
  the emulator must agree. An optional text field that is present but empty is still checked by
  its rule: ``CAMPAIGNREF=""`` is E721, ``DISABLEFALLBACKSMS=""`` is allowed.
* A value of the wrong shape (a list where text is expected, a number, ...) is ``E100``.
* A repeatable element given as a single mapping (what an XML decoder produces for one
  occurrence) is read as a one-item list.
* Error fields are keyword names (:func:`~skycore_async.fields.param_name`) with nested paths and
  0-based indexes, e.g. ``slides[2].text``, ``dynamic_vcard.phone[1].label``, ``data['AGE']``;
  messages count slides from 1, as Skycore does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

from .errors import ValidationError
from .fields import (
    ACTIONS,
    SLIDE_MEDIA,
    ApiRequest,
    Dialect,
    canon_action,
    param_name,
)

__all__ = ["is_valid_number", "normalize_number", "validate_request"]

#: Complaint about a text value ("is 70 characters; ..."), or None when it is fine.
Check = Callable[[str], str | None]
Rule = tuple[str, Check]

MAX_TEXT: Final = 100_000  # any single string; guards the emulator against huge values
MAX_DEPTH: Final = 32
MAX_SLIDES: Final = 8  # §2.5
MAX_SLIDE_TEXT: Final = 5000  # §2.5 (older docs: 500)
MAX_RECIPIENTS: Final = 100  # E623, §2.1 note
MAX_VCARD_ITEMS: Final = 4  # §3.2
BIGINT: Final = 2**63 - 1  # MMSID is a "bigint" (§2.1)

# Anything outside the XML 1.0 ``Char`` production.
_XML_BAD: Final = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACE_OR_CONTROL: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_SEPARATORS: Final = re.compile(r"[\s\-.()]")
_DIGITS: Final = re.compile(r"[0-9]+")
_MD5: Final = re.compile(r"[0-9a-fA-F]{32}")
_DATA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_VCARD_PHONE: Final = re.compile(r"\+?[0-9 ()-]+")
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_OBJECTS: Final = frozenset({"VCARD", "ICAL", "PDF", "PASSBOOK"})
_PHOTO_TYPES: Final = (".gif", ".jpg", ".jpeg", ".png")


def _show(text: str) -> str:
    return repr(text[:40]) + ("..." if len(text) > 40 else "")


# --- phone numbers ------------------------------------------------------------------------


def _number_problem(digits: str) -> str | None:
    if not _DIGITS.fullmatch(digits):
        return "must contain only digits"
    if not 7 <= len(digits) <= 15:
        return f"has {len(digits)} digits; an international number has 7 to 15"
    if digits.startswith("0"):
        return "starts with 0; start with the country code instead (no 00, 011 or +)"
    return None


def is_valid_number(value: str) -> bool:
    """True for an already-normalized international number: 7-15 digits, not starting with 0."""
    return isinstance(value, str) and _number_problem(value) is None


def normalize_number(raw: str) -> str:
    """Reduce a human-written number to Skycore's international format (§1.7).

    Strips spaces, dashes, dots and parentheses, then one leading ``+``, ``00`` or ``011``:
    ``"+1 (774) 319-9144"`` becomes ``"17743199144"``. Raises ``ValidationError("to", "E110")``
    when the result is not 7 to 15 digits starting with a non-zero country code.
    """
    if (
        isinstance(raw, str)
        and 7 <= len(raw) <= 15
        and raw.isascii()
        and raw.isdigit()
        and raw[0] != "0"
    ):
        return raw  # already normalised: the bulk hot path's common case
    digits = _SEPARATORS.sub("", raw) if isinstance(raw, str) else ""
    for prefix in ("+", "00", "011"):
        if digits.startswith(prefix):
            digits = digits[len(prefix) :]
            break
    problem = _number_problem(digits)
    if problem is not None:
        shown = _show(raw) if isinstance(raw, str) else type(raw).__name__
        raise ValidationError(
            "to", "E110", f"to {shown} {problem}; write it with the country code, e.g. 17743199144"
        )
    return digits


# --- checks for single text values ----------------------------------------------------------


def _matches(pattern: str, expected: str) -> Check:
    regex = re.compile(pattern)

    def check(value: str) -> str | None:
        if regex.fullmatch(value):
            return None
        return f"must be {expected}; got {_show(value)}"

    return check


def _max_len(limit: int) -> Check:
    def check(value: str) -> str | None:
        if len(value) <= limit:
            return None
        return f"is {len(value)} characters; Skycore accepts at most {limit}"

    return check


def _one_of(*choices: str) -> Check:
    names = " or ".join(repr(choice) if choice else "empty" for choice in choices)

    def check(value: str) -> str | None:
        return None if value.lower() in choices else f"must be {names}; got {_show(value)}"

    return check


def _integer(low: int, high: int, expected: str) -> Check:
    def check(value: str) -> str | None:
        if _DIGITS.fullmatch(value) and len(value) <= 20 and low <= int(value) <= high:
            return None
        return f"must be {expected}; got {_show(value)}"

    return check


def _latin1(value: str) -> str | None:
    bad = next((char for char in value if ord(char) > 0xFF), None)
    if bad is None:
        return None
    return (
        f"contains {bad!r} (U+{ord(bad):04X}); carrier MMSCs reject emoji and other "
        "non-Latin-1 characters in subjects"
    )


def _recipient_count(value: str) -> str | None:
    count = value.count(",") + 1
    if count <= MAX_RECIPIENTS:
        return None
    return f"lists {count} numbers; Skycore accepts at most {MAX_RECIPIENTS} per request"


def _recipients(value: str) -> str | None:
    numbers = [part.strip() for part in value.split(",")]
    for position, number in enumerate(numbers, 1):
        problem = _number_problem(number)
        if problem is not None:
            where = f"entry {position} ({_show(number)})" if len(numbers) > 1 else _show(number)
            return (
                f"{where} {problem}; use international format, digits only, e.g. 17743199144 "
                "(normalize_number converts '+1 (774) 319-9144')"
            )
    return None


_POSITIVE: Final = "a positive whole number"
# §3.1: the digest gives no code for a bad subject; E228 ("text too long") and E229 ("content
# not allowed") are the closest content codes, used for both SUBJECT and CUSTOMSUBJECT.
_SUBJECT_RULES: Final[tuple[Rule, ...]] = (("E228", _max_len(80)), ("E229", _latin1))
_YES_NO: Final = _one_of("yes", "no", "")
_TRUE_FALSE: Final = _one_of("true", "false")

#: Top-level text fields and their rules, checked in this order when present.
_LEAF_RULES: Final[dict[str, tuple[Rule, ...]]] = {
    "MMSID": (("E625", _integer(1, BIGINT, f"{_POSITIVE} (a saved MMS id)")),),
    "TOCAMPAIGN": (("E714", _integer(1, BIGINT, f"{_POSITIVE} (a campaign id)")),),
    "TO": (("E623", _recipient_count), ("E110", _recipients)),
    "FROM": (("E111", _matches(r"[^\s\x00-\x1f\x7f-\x9f]+", "a sender code without spaces")),),
    "FROM_MASK": (
        ("E111", _max_len(11)),
        ("E111", _matches(r"[A-Za-z0-9 ]*[A-Za-z0-9][A-Za-z0-9 ]*", "letters, digits, spaces")),
    ),
    "OPERATORID": (("E651", _matches(r"[0-9]+", "digits only (a carrier id)")),),
    "CAMPAIGNREF": (
        ("E721", _max_len(64)),
        ("E721", _matches(r"\S+", "a campaign reference without whitespace")),
    ),
    "CLIENT_REFERENCE": (("E100", _max_len(64)),),
    "SUBJECT": _SUBJECT_RULES,
    "CUSTOMSUBJECT": _SUBJECT_RULES,
    # §3.1 / E652: only yes, no or empty, although one parameter table says true/false.
    "DISABLEFALLBACKSMS": (("E652", _YES_NO),),
    "DISABLEFALLBACKSMSLINK": (("E652", _YES_NO),),
    "FORCE_SEND_AS_SMS": (("E655", _TRUE_FALSE),),
    "FORCEPASSASLINK": (("E100", _YES_NO),),
    "DDMFORCE": (("E100", _TRUE_FALSE),),
    "DDMTIMEOUT": (("E100", _integer(0, 2**31 - 1, "a whole number of minutes, 0 or more")),),
    # FALLBACKSMSTEXT: §3.1 only *recommends* <= 110 characters, so it is not enforced.
    **dict.fromkeys(("SERVICEID", "NAME", "TEXT", "DDMTITLE", "DDMTEXT", "FALLBACKSMSTEXT"), ()),
}

_URL: Final = "a full absolute URL (http:// or https://)"


def _is_web_url(value: str) -> bool:
    if _SPACE_OR_CONTROL.search(value):
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(host)


def _is_photo_url(value: str) -> bool:
    return _is_web_url(value) and urlsplit(value).path.lower().endswith(_PHOTO_TYPES)


# --- shapes ---------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping | list | tuple):
        return not value
    return value is None


def _given(text: str | None) -> TypeGuard[str]:
    return text is not None and bool(text.strip())


def _leaf(value: Any, field: str) -> str | None:
    """``value`` when it is text, None when absent; E100 for any other shape."""
    if value is None or isinstance(value, str):
        return value
    kind = "several values" if isinstance(value, list | tuple) else type(value).__name__
    raise ValidationError(field, "E100", f"{field} must be a single text value, got {kind}")


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if _blank(value):
        return {}
    raise ValidationError(field, "E100", f"{field} must be a group of fields, got text or a list")


def _items(value: Any, field: str) -> Sequence[Any]:
    if _blank(value):
        return ()
    if isinstance(value, Mapping):
        return (value,)
    if isinstance(value, list | tuple):
        return value
    raise ValidationError(field, "E100", f"{field} must be a list of groups, got text")


def _child(path: str, key: str) -> str:
    if path == "data":
        return f"data[{key!r}]"
    return f"{path}.{key.lower()}"


def _check_text(text: str, field: str) -> None:
    if len(text) > MAX_TEXT:
        raise ValidationError(
            field, "E100", f"{field} is {len(text)} characters; no value may exceed {MAX_TEXT}"
        )
    bad = _XML_BAD.search(text)
    if bad is not None:
        raise ValidationError(
            field,
            "E108",
            f"{field} contains {bad.group()!r} at position {bad.start()}, which XML 1.0 cannot "
            "carry; remove control characters, lone surrogates and U+FFFE/U+FFFF",
        )


def _walk(value: Any, field: str, depth: int) -> None:
    """Every leaf is XML-encodable text of sane size; containers are mappings and lists."""
    if depth > MAX_DEPTH:
        raise ValidationError(field, "E100", f"{field} is nested too deeply")
    if isinstance(value, str):
        _check_text(value, field)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(field, "E100", f"{field} has a non-text key {key!r:.40}")
            _check_text(key, field)
            _walk(item, _child(field, key), depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{field}[{index}]", depth + 1)
    elif value is not None:
        raise ValidationError(field, "E100", f"{field} must be text, got {type(value).__name__}")


# --- request-level rules --------------------------------------------------------------------

_REQUIRED: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "sendSavedMMS": (
        ("MMSID", "E620", "the id of a saved MMS template"),
        ("TO", "E621", "the recipient number"),
        ("FROM", "E111", "the sending short code or long code"),
    ),
    "sendSavedMMSCampaign": (
        ("MMSID", "E620", "the id of a saved MMS template"),
        ("TOCAMPAIGN", "E624", "the id of the campaign to send to"),
    ),
    "sendMMS": (
        ("TO", "E201", "the recipient number"),
        ("FROM", "E111", "the sending short code"),
        ("NAME", "E311", "an internal name for the content"),
        ("SLIDE", "E312", "at least one slide"),
    ),
    "saveMMS": (
        ("NAME", "E311", "an internal name for the content"),
        ("SUBJECT", "E314", "the MMS subject"),
        ("SLIDE", "E312", "at least one slide"),
    ),
    "sendSMS": (
        ("TO", "E201", "the recipient number"),
        ("FROM", "E111", "the sending short code or long code"),
        ("TEXT", "E712", "the SMS text"),
    ),
    "getMmsIds": (),
}

# §2.2 / §2.4(c): the hyphenated (Sinch) dialect makes these mandatory as well.
_HYPHENATED_EXTRA: Final = (
    ("SERVICEID", "E627", "the service id (mandatory in the hyphenated dialect)"),
    ("FALLBACKSMSTEXT", "E622", "the fallback SMS text (mandatory in the hyphenated dialect)"),
)
_HYPHENATED_REQUIRED: Final = {"sendSavedMMS": _HYPHENATED_EXTRA, "sendMMS": _HYPHENATED_EXTRA}


def _check_action(action: Any) -> str:
    name = canon_action(action) if isinstance(action, str) else ""
    if name not in ACTIONS:
        shown = _show(action) if isinstance(action, str) else type(action).__name__
        raise ValidationError(
            "action", "E101", f"action {shown} is not one of {', '.join(ACTIONS)}"
        )
    return name


def _check_credentials(fields: Mapping[str, Any]) -> None:
    """§1.3: API_KEY, or the legacy USER + PASS (MD5 hex of the password)."""
    key = _leaf(fields.get("API_KEY"), "api_key")
    user = _leaf(fields.get("USER"), "user")
    password = _leaf(fields.get("PASS"), "password")
    if not _given(key) and not _given(user):
        raise ValidationError("api_key", "E102", "api_key is required (or user and password)")
    if not _given(key) and not _given(password):
        raise ValidationError("password", "E103", "password is required together with user")
    if _given(password) and not _MD5.fullmatch(password):
        raise ValidationError(
            "password", "E103", "password must be the 32-character hex MD5 of the password"
        )


def _check_required(fields: Mapping[str, Any], action: str, dialect: Dialect) -> None:
    required = _REQUIRED[action]
    if dialect == "hyphenated":
        required += _HYPHENATED_REQUIRED.get(action, ())
    for tag, code, what in required:
        if _blank(fields.get(tag)):
            name = param_name(tag)
            raise ValidationError(name, code, f"{name} is required for {action}: {what}")
    # §2.4(b): without a subject the fallback SMS needs its own text.
    no_subject = _blank(fields.get("SUBJECT"))
    if action == "sendMMS" and no_subject and _blank(fields.get("FALLBACKSMSTEXT")):
        raise ValidationError(
            "fallback_sms_text", "E622", "fallback_sms_text is required by sendMMS without subject"
        )


def _check_leaf(value: Any, tag: str, rules: tuple[Rule, ...]) -> None:
    name = param_name(tag)
    text = _leaf(value, name)
    if text is None:
        return
    for code, check in rules:
        complaint = check(text)
        if complaint is not None:
            raise ValidationError(name, code, f"{name} {complaint}")


# --- composite fields -----------------------------------------------------------------------

_SLIDE_NUMBER: Final = _integer(1, MAX_SLIDES, f"a slide number from 1 to {MAX_SLIDES}")
_DURATION: Final = _integer(1, 60, "a whole number of seconds from 1 to 60 (30 or less advised)")


def _check_custom_text(value: Any) -> None:
    """§2.1: each CUSTOMTEXT needs VALUE and SLIDE; one replacement text per slide."""
    seen: dict[int, int] = {}
    for index, item in enumerate(_items(value, "custom_text")):
        path = f"custom_text[{index}]"
        entry = _mapping(item, path)
        text = _leaf(entry.get("VALUE"), f"{path}.value")
        slide = _leaf(entry.get("SLIDE"), f"{path}.slide")
        if not _given(text):
            raise ValidationError(f"{path}.value", "E100", f"{path} needs both value and slide")
        if not _given(slide):
            raise ValidationError(f"{path}.slide", "E100", f"{path} needs both value and slide")
        complaint = _SLIDE_NUMBER(slide)
        if complaint is not None:
            raise ValidationError(f"{path}.slide", "E100", f"{path}.slide {complaint}")
        if len(text) > MAX_SLIDE_TEXT:
            message = f"{path}.value is {len(text)} characters; a slide allows {MAX_SLIDE_TEXT}"
            raise ValidationError(f"{path}.value", "E228", message)
        number = int(slide)
        if number in seen:
            message = f"{path} sets slide {number} again (custom_text[{seen[number]}] did)"
            raise ValidationError(f"{path}.slide", "E100", message)
        seen[number] = index


def _check_data(value: Any) -> None:
    """Merge-tag values: each name becomes an XML element, so it must be a plain name."""
    for name, item in _mapping(value, "data").items():
        path = f"data[{name!r}]"
        if not _DATA_NAME.fullmatch(name) or name.lower().startswith("xml"):
            raise ValidationError(
                path,
                "E108",
                f"{path} is not a usable tag name: use letters, digits, '_' and '-', "
                "not starting with a digit or 'xml'",
            )
        _leaf(item, path)


# (media on one side, media on the other, code, rule) — §2.5 content rules.
_CLASHES: Final = (
    (frozenset({"VIDEO"}), frozenset({"IMAGE"}), "E227", "a video slide may only add text"),
    (frozenset({"VIDEO"}), frozenset({"AUDIO"}), "E226", "a video slide may only add text"),
    (_OBJECTS, frozenset({"IMAGE", "AUDIO", "VIDEO"}), "E224", "an object needs its own slide"),
)


def _check_media_mix(media: frozenset[str], path: str, number: int) -> None:
    objects = sorted(media & _OBJECTS)
    if len(objects) > 1:
        message = f"{path} (slide {number}) has {' and '.join(objects)}; one object at most"
        raise ValidationError(path, "E223", message)
    for left, right, code, rule in _CLASHES:
        if media & left and media & right:
            both = " and ".join(sorted((media & left) | (media & right)))
            raise ValidationError(path, code, f"{path} (slide {number}) has {both}: {rule}")


def _check_slide(value: Any, index: int) -> None:
    path, number = f"slides[{index}]", index + 1
    slide = _mapping(value, path)
    text = _leaf(slide.get("TEXT"), f"{path}.text")
    media = frozenset(tag for tag in SLIDE_MEDIA if not _blank(slide.get(tag)))
    if not media and not _given(text):
        message = f"{path} (slide {number}) is empty: give it text or media"
        raise ValidationError(path, "E313", message)
    _check_media_mix(media, path, number)
    if text is not None and len(text) > MAX_SLIDE_TEXT:
        message = f"{path}.text is {len(text)} characters; a slide allows {MAX_SLIDE_TEXT}"
        raise ValidationError(f"{path}.text", "E228", message)
    duration = _leaf(slide.get("DURATION"), f"{path}.duration")
    complaint = _DURATION(duration) if _given(duration) else None
    if complaint is not None:
        raise ValidationError(f"{path}.duration", "E230", f"{path}.duration {complaint}")
    for tag in SLIDE_MEDIA:
        if tag in media:
            holder = f"{path}.{tag.lower()}"
            field = f"{holder}.url"
            url = _leaf(_mapping(slide[tag], holder).get("URL"), field)
            if not _given(url) or not _is_web_url(url):
                raise ValidationError(field, "E229", f"{field} must be {_URL}")


def _check_slides(value: Any) -> None:
    """§2.5: 1 to 8 slides, none empty, allowed media mixes, text and duration limits."""
    slides = _items(value, "slides")
    if len(slides) > MAX_SLIDES:
        message = f"slides has {len(slides)} slides; Skycore allows at most {MAX_SLIDES}"
        raise ValidationError("slides", "E225", message)
    for index, slide in enumerate(slides):
        _check_slide(slide, index)


def _has_text(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_has_text(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_text(item) for item in value)
    return isinstance(value, str) and bool(value.strip())


_NAMES: Final = ("FIRSTNAME", "LASTNAME", "SUFFIX")


def _check_vcard_name(name: Mapping[str, Any]) -> None:
    # §3.2 / §9.7: the prose wants first *and* last name, the parameter table either one; the
    # error text ("first or last name required") sides with the table, so one is enough.
    parts = {tag: _leaf(name.get(tag), f"dynamic_vcard.name.{tag.lower()}") for tag in _NAMES}
    if not _given(parts["FIRSTNAME"]) and not _given(parts["LASTNAME"]):
        message = "dynamic_vcard.name needs a firstname or a lastname"
        raise ValidationError("dynamic_vcard.name", "E1515", message)
    for tag, text in parts.items():
        if text is not None and not all(char.isalnum() or char in " ." for char in text):
            field = f"dynamic_vcard.name.{tag.lower()}"
            message = f"{field} may contain only letters, digits, spaces and '.'"
            raise ValidationError(field, "E1515", message)


def _check_vcard_phone(number: str | None, field: str) -> None:
    if not _given(number):
        raise ValidationError(field, "E1507", f"{field} is blank")
    digits = sum(char.isdigit() for char in number)
    if not _VCARD_PHONE.fullmatch(number) or not 3 <= digits <= 20:
        message = f"{field} must be 3 to 20 digits, optionally with + - ( ) and spaces"
        raise ValidationError(field, "E1506", message)


def _check_vcard_email(address: str | None, field: str) -> None:
    if not _given(address) or not _EMAIL.fullmatch(address):
        raise ValidationError(field, "E1508", f"{field} must be an e-mail address")


def _check_vcard_nothing(value: str | None, field: str) -> None:
    return None


# (list tag, value key, code for more than 4 entries, check of the value) — §3.2.
_VCARD_LISTS: Final[tuple[tuple[str, str, str, Callable[[str | None, str], None]], ...]] = (
    ("PHONE", "NUMBER", "E1506", _check_vcard_phone),
    ("EMAIL", "ID", "E1508", _check_vcard_email),
    ("PHYSICALADDRESS", "ADDRESS", "E1516", _check_vcard_nothing),
)


def _check_vcard_lists(card: Mapping[str, Any]) -> None:
    for tag, key, code, check in _VCARD_LISTS:
        path = f"dynamic_vcard.{tag.lower()}"
        entries = _items(card.get(tag), path)
        if len(entries) > MAX_VCARD_ITEMS:
            message = f"{path} has {len(entries)} entries; at most {MAX_VCARD_ITEMS} are allowed"
            raise ValidationError(path, code, message)
        for index, item in enumerate(entries):
            entry = _mapping(item, f"{path}[{index}]")
            field = f"{path}[{index}].{key.lower()}"
            check(_leaf(entry.get(key), field), field)
            field = f"{path}[{index}].label"
            label = _leaf(entry.get("LABEL"), field)
            if _given(label) and label.lower() not in {"work", "home"}:
                message = f"{field} must be 'work' or 'home' (or absent for work)"
                raise ValidationError(field, "E1516", message)


def _check_vcard(value: Any) -> None:
    """§3.2: some data, a first or last name, at most 4 of each list, labels, photo type."""
    card = _mapping(value, "dynamic_vcard")
    if not _has_text(card):
        raise ValidationError("dynamic_vcard", "E1501", "dynamic_vcard has no data in it")
    _check_vcard_name(_mapping(card.get("NAME"), "dynamic_vcard.name"))
    for tag in ("ORGANIZATION", "TITLE", "NOTE"):
        _leaf(card.get(tag), f"dynamic_vcard.{tag.lower()}")
    photo = _leaf(card.get("PHOTOURL"), "dynamic_vcard.photo_url")
    if _given(photo) and not _is_photo_url(photo):
        message = f"dynamic_vcard.photo_url must be {_URL} of a .gif, .jpg or .png image"
        raise ValidationError("dynamic_vcard.photo_url", "E1502", message)
    _check_vcard_lists(card)


_COMPOSITES: Final[dict[str, Callable[[Any], None]]] = {
    "CUSTOMTEXT": _check_custom_text,
    "DATA": _check_data,
    "SLIDE": _check_slides,
    "DYNAMICVCARD": _check_vcard,
}


def validate_request(request: ApiRequest, dialect: Dialect = "skycore") -> None:
    """Raise ValidationError(field, code, message) for the first rule the request breaks.

    Order: XML encodability of every value (E108/E100), action (E101), credentials
    (E102/E103), required fields of the action (and of ``dialect``), then the rules of each
    field present. Works on any decoded shape: nothing but ``ValidationError`` escapes.
    """
    fields = request.fields
    if not isinstance(fields, Mapping):
        raise ValidationError("request", "E100", "the request fields must be a mapping")
    for tag, value in fields.items():
        if not isinstance(tag, str):
            raise ValidationError("request", "E100", f"field name {tag!r:.40} is not text")
        _check_text(tag, "request")
        _walk(value, param_name(tag), 1)
    action = _check_action(request.action)
    _check_credentials(fields)
    _check_required(fields, action, dialect)
    for tag, rules in _LEAF_RULES.items():
        _check_leaf(fields.get(tag), tag, rules)
    for tag, check in _COMPOSITES.items():
        value = fields.get(tag)
        if tag == "DYNAMICVCARD" and value is not None and _blank(value):
            # An empty <DYNAMICVCARD/> was sent on purpose: the server answers E1501.
            raise ValidationError("dynamic_vcard", "E1501", "dynamic_vcard has no data in it")
        if not _blank(value):
            check(value)
