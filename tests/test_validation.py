"""Tests for skycore_async.validation: one row per rule, valid requests, and fuzzing."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skycore_async.errors import ValidationError, describe_code
from skycore_async.fields import ACTIONS, SLIDE_MEDIA, ApiRequest
from skycore_async.validation import is_valid_number, normalize_number, validate_request

KEY = "6f1ed002ab5595859014ebf0951522d9"
IMG = "https://media.example.com/a/1.jpg"
DROP: Any = object()  # marks a field to remove from the base request

SLIDE = {"TEXT": "Hello {$firstname|there}", "DURATION": "5", "IMAGE": {"URL": IMG}}
VCARD: dict[str, Any] = {
    "NAME": {"FIRSTNAME": "John", "LASTNAME": "Smith", "SUFFIX": "Jr."},
    "ORGANIZATION": "Acme, Inc.",
    "TITLE": "CEO",
    "PHOTOURL": "https://media.example.com/john.PNG?size=2",
    "NOTE": "Call me",
    "PHONE": [{"NUMBER": "+1 (774) 319-9144", "LABEL": "work"}, {"NUMBER": "17743199145"}],
    "EMAIL": [{"ID": "john@example.com", "LABEL": "Home"}],
    "PHYSICALADDRESS": [{"ADDRESS": "1 Main St, Springfield", "LABEL": "work"}],
}
BASE: dict[str, dict[str, Any]] = {
    "sendSavedMMS": {"API_KEY": KEY, "MMSID": "35674", "TO": "16501234123", "FROM": "60856"},
    "sendSavedMMSCampaign": {"API_KEY": KEY, "MMSID": "35674", "TOCAMPAIGN": "332"},
    "sendMMS": {
        "API_KEY": KEY,
        "TO": "16501234123",
        "FROM": "60856",
        "NAME": "fishtank",
        "SUBJECT": "Fish news",
        "SLIDE": [SLIDE],
    },
    "saveMMS": {"API_KEY": KEY, "NAME": "fishtank", "SUBJECT": "Fish news", "SLIDE": [SLIDE]},
    "sendSMS": {"API_KEY": KEY, "TO": "16501234123", "FROM": "60856", "TEXT": "Hello"},
    "getMmsIds": {"API_KEY": KEY},
}
HYPHENATED_EXTRA = {"SERVICEID": "1234", "FALLBACKSMSTEXT": "Your MMS is here"}
FULL_SEND_SAVED: dict[str, Any] = {
    "FROM_MASK": "Brand 1",
    "OPERATORID": "0001570",
    "CAMPAIGNREF": "12333",
    "DDMTITLE": "Device Discovery",
    "DDMTEXT": "Reply to see your MMS",
    "DDMTIMEOUT": "10",
    "DDMFORCE": "True",
    "CUSTOMTEXT": [{"VALUE": "line 1\nline 2", "SLIDE": "1"}, {"VALUE": "two", "SLIDE": "2"}],
    "CUSTOMSUBJECT": "Café déjà vu",
    "DATA": {"FIRSTNAME": "Bill", "first_name": "Bill", "age-2": "30", "_x": ""},
    "FALLBACKSMSTEXT": "See your MMS",
    "DISABLEFALLBACKSMS": "YES",
    "DISABLEFALLBACKSMSLINK": "",
    "FORCE_SEND_AS_SMS": "false",
    "FORCEPASSASLINK": "yes",
    "CLIENT_REFERENCE": "o" * 64,
    "DYNAMICVCARD": VCARD,
}
ALL_SLIDE_KINDS = [
    {"TEXT": "just text"},
    {"IMAGE": {"URL": IMG}, "AUDIO": {"URL": "http://m.example.com/1.mp3"}},
    {"VIDEO": {"URL": "https://m.example.com/1.mp4"}, "TEXT": "x", "DURATION": "60"},
    {"VCARD": {"URL": "https://m.example.com/1.vcf"}, "TEXT": "card"},
    {"PASSBOOK": {"URL": "https://m.example.com/1.pkpass"}},
    {"PDF": {"URL": "https://m.example.com/1.pdf"}, "IMAGE": None},
    {"ICAL": {"URL": "https://m.example.com/1.ics"}, "DURATION": ""},
    {"TEXT": "ú" * 5000, "DURATION": "1"},
]


def build(action: str, dialect: str = "skycore", **changes: Any) -> ApiRequest:
    """A valid request for ``action`` with top-level ``changes`` applied (DROP removes)."""
    fields = copy.deepcopy(BASE[action])
    if dialect == "hyphenated" and action in {"sendSavedMMS", "sendMMS"}:
        fields.update(HYPHENATED_EXTRA)
    for tag, value in changes.items():
        if value is DROP:
            fields.pop(tag, None)
        else:
            fields[tag] = value
    return ApiRequest(action, fields)


def slide(**changes: Any) -> dict[str, Any]:
    """The base slide with ``changes`` applied."""
    return {**SLIDE, **changes}


def vcard(**changes: Any) -> dict[str, Any]:
    """The full vCard with ``changes`` applied."""
    card = {**copy.deepcopy(VCARD), **changes}
    return {tag: value for tag, value in card.items() if value is not DROP}


def url(address: str) -> dict[str, str]:
    """A media element pointing at ``address``."""
    return {"URL": address}


def numbers(count: int) -> str:
    """A comma-separated TO with ``count`` valid numbers."""
    return ",".join(str(16501234000 + n) for n in range(count))


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep."""
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


SSM, CAMP, MMS, SAVE, SMS, IDS = ACTIONS
R = pytest.param
INVALID = [
    # action and credentials (§1.3, §4.1)
    R("sendFax", {"API_KEY": KEY}, "action", "E101", id="unknown-action"),
    R(IDS, {"API_KEY": DROP}, "api_key", "E102", id="no-api-key"),
    R(IDS, {"API_KEY": "  "}, "api_key", "E102", id="blank-api-key"),
    R(IDS, {"API_KEY": DROP, "USER": "bob"}, "password", "E103", id="user-without-pass"),
    R(IDS, {"API_KEY": DROP, "USER": "bob", "PASS": "secret"}, "password", "E103", id="pass-md5"),
    R(IDS, {"PASS": "g" * 32}, "password", "E103", id="pass-not-hex"),
    # sendSavedMMS (§2.1)
    R(SSM, {"MMSID": DROP}, "mms_id", "E620", id="ssm-no-mmsid"),
    R(SSM, {"MMSID": "abc"}, "mms_id", "E625", id="ssm-mmsid-text"),
    R(SSM, {"MMSID": "0"}, "mms_id", "E625", id="ssm-mmsid-zero"),
    R(SSM, {"MMSID": "-5"}, "mms_id", "E625", id="ssm-mmsid-negative"),
    R(SSM, {"MMSID": "9" * 20}, "mms_id", "E625", id="ssm-mmsid-over-bigint"),
    R(SSM, {"TO": DROP}, "to", "E621", id="ssm-no-to"),
    R(SSM, {"TO": "+16501234123"}, "to", "E110", id="ssm-to-plus"),
    R(SSM, {"TO": "06501234123"}, "to", "E110", id="ssm-to-leading-zero"),
    R(SSM, {"TO": "123456"}, "to", "E110", id="ssm-to-short"),
    R(SSM, {"TO": "16501234123,abc"}, "to", "E110", id="ssm-to-list-bad-entry"),
    R(SSM, {"TO": "16501234123,"}, "to", "E110", id="ssm-to-trailing-comma"),
    R(SSM, {"TO": numbers(101)}, "to", "E623", id="ssm-to-101-numbers"),
    R(SSM, {"FROM": DROP}, "from_", "E111", id="ssm-no-from"),
    R(SSM, {"FROM": "608 56"}, "from_", "E111", id="ssm-from-space"),
    R(SSM, {"FROM": "60856\x85"}, "from_", "E111", id="ssm-from-control"),
    # sendSavedMMSCampaign (§2.3)
    R(CAMP, {"MMSID": DROP}, "mms_id", "E620", id="camp-no-mmsid"),
    R(CAMP, {"TOCAMPAIGN": DROP}, "to_campaign", "E624", id="camp-no-campaign"),
    R(CAMP, {"TOCAMPAIGN": "x1"}, "to_campaign", "E714", id="camp-campaign-text"),
    # sendSMS (§2.6)
    R(SMS, {"TO": DROP}, "to", "E201", id="sms-no-to"),
    R(SMS, {"FROM": ""}, "from_", "E111", id="sms-no-from"),
    R(SMS, {"TEXT": DROP}, "text", "E712", id="sms-no-text"),
    # sendMMS / saveMMS (§2.4, §2.5)
    R(MMS, {"TO": DROP}, "to", "E201", id="mms-no-to"),
    R(MMS, {"FROM": DROP}, "from_", "E111", id="mms-no-from"),
    R(MMS, {"NAME": DROP}, "name", "E311", id="mms-no-name"),
    R(MMS, {"SLIDE": DROP}, "slides", "E312", id="mms-no-slides"),
    R(MMS, {"SLIDE": []}, "slides", "E312", id="mms-empty-slides"),
    R(MMS, {"SUBJECT": DROP}, "fallback_sms_text", "E622", id="mms-no-subject-no-fallback"),
    R(SAVE, {"NAME": DROP}, "name", "E311", id="save-no-name"),
    R(SAVE, {"SUBJECT": DROP}, "subject", "E314", id="save-no-subject"),
    R(SAVE, {"SLIDE": DROP}, "slides", "E312", id="save-no-slides"),
    # optional fields (§2.1, §3.1)
    R(SSM, {"CLIENT_REFERENCE": "r" * 65}, "client_reference", "E100", id="client-ref-65"),
    R(SSM, {"FROM_MASK": "BrandNameXYZ"}, "from_mask", "E111", id="from-mask-12"),
    R(SSM, {"FROM_MASK": "Brand!"}, "from_mask", "E111", id="from-mask-punctuation"),
    R(SSM, {"FROM_MASK": "   "}, "from_mask", "E111", id="from-mask-spaces"),
    R(SAVE, {"SUBJECT": "s" * 81}, "subject", "E228", id="subject-81"),
    R(SAVE, {"SUBJECT": "Hi 😀"}, "subject", "E229", id="subject-emoji"),
    R(SSM, {"CUSTOMSUBJECT": "Sale ✓"}, "custom_subject", "E229", id="custom-subject-unicode"),
    R(SSM, {"CUSTOMSUBJECT": "s" * 81}, "custom_subject", "E228", id="custom-subject-81"),
    R(SSM, {"DISABLEFALLBACKSMS": "true"}, "disable_fallback_sms", "E652", id="dfs-true"),
    R(SSM, {"DISABLEFALLBACKSMSLINK": "1"}, "disable_fallback_sms_link", "E652", id="dfsl-1"),
    R(SSM, {"FORCE_SEND_AS_SMS": "yes"}, "force_send_as_sms", "E655", id="force-sms-yes"),
    R(SSM, {"DDMFORCE": "yes"}, "ddm_force", "E100", id="ddm-force-yes"),
    R(SSM, {"FORCEPASSASLINK": "true"}, "force_pass_as_link", "E100", id="pass-as-link-true"),
    R(SSM, {"DDMTIMEOUT": "-1"}, "ddm_timeout", "E100", id="ddm-timeout-negative"),
    R(SSM, {"DDMTIMEOUT": "5m"}, "ddm_timeout", "E100", id="ddm-timeout-unit"),
    R(SSM, {"OPERATORID": "T-Mobile"}, "operator_id", "E651", id="operator-id-text"),
    R(SSM, {"CAMPAIGNREF": ""}, "campaign_ref", "E721", id="campaign-ref-empty"),
    R(SSM, {"CAMPAIGNREF": "a b"}, "campaign_ref", "E721", id="campaign-ref-space"),
    R(SSM, {"CAMPAIGNREF": "c" * 65}, "campaign_ref", "E721", id="campaign-ref-65"),
]
HYPHENATED_INVALID = [
    R(SSM, {"SERVICEID": DROP}, "service_id", "E627", id="hy-ssm-no-service-id"),
    R(SSM, {"FALLBACKSMSTEXT": " "}, "fallback_sms_text", "E622", id="hy-ssm-no-fallback"),
    R(MMS, {"SERVICEID": DROP}, "service_id", "E627", id="hy-mms-no-service-id"),
    R(MMS, {"FALLBACKSMSTEXT": DROP}, "fallback_sms_text", "E622", id="hy-mms-no-fallback"),
]
INVALID += [
    # CUSTOMTEXT (§2.1)
    R(SSM, {"CUSTOMTEXT": "hi"}, "custom_text", "E100", id="ct-text"),
    R(SSM, {"CUSTOMTEXT": [{"VALUE": "x"}]}, "custom_text[0].slide", "E100", id="ct-no-slide"),
    R(SSM, {"CUSTOMTEXT": [{"SLIDE": "1"}]}, "custom_text[0].value", "E100", id="ct-no-value"),
    R(SSM, {"CUSTOMTEXT": ["x"]}, "custom_text[0]", "E100", id="ct-item-text"),
    R(
        SSM,
        {"CUSTOMTEXT": [{"VALUE": "x", "SLIDE": "9"}]},
        "custom_text[0].slide",
        "E100",
        id="ct-slide-9",
    ),
    R(
        SSM,
        {"CUSTOMTEXT": {"VALUE": "x", "SLIDE": "0"}},
        "custom_text[0].slide",
        "E100",
        id="ct-single-slide-0",
    ),
    R(
        SSM,
        {"CUSTOMTEXT": [{"VALUE": "v" * 5001, "SLIDE": "1"}]},
        "custom_text[0].value",
        "E228",
        id="ct-value-5001",
    ),
    R(
        SSM,
        {"CUSTOMTEXT": [{"VALUE": "a", "SLIDE": "2"}, {"VALUE": "b", "SLIDE": "02"}]},
        "custom_text[1].slide",
        "E100",
        id="ct-duplicate-slide",
    ),
    # DATA
    R(SSM, {"DATA": "x"}, "data", "E100", id="data-text"),
    R(SSM, {"DATA": {"1abc": "x"}}, "data['1abc']", "E108", id="data-name-digit"),
    R(SSM, {"DATA": {"XmlFoo": "x"}}, "data['XmlFoo']", "E108", id="data-name-xml"),
    R(SSM, {"DATA": {"first name": "x"}}, "data['first name']", "E108", id="data-name-space"),
    R(SSM, {"DATA": {"AGE": ["1", "2"]}}, "data['AGE']", "E100", id="data-value-list"),
    # slides (§2.5)
    R(MMS, {"SLIDE": [SLIDE] * 9}, "slides", "E225", id="slides-9"),
    R(MMS, {"SLIDE": [{}]}, "slides[0]", "E313", id="slide-empty"),
    R(SAVE, {"SLIDE": [SLIDE, {"TEXT": "  "}]}, "slides[1]", "E313", id="slide-blank-text"),
    R(SAVE, {"SLIDE": [SLIDE, None]}, "slides[1]", "E313", id="slide-none"),
    R(MMS, {"SLIDE": ["hello"]}, "slides[0]", "E100", id="slide-text"),
    R(MMS, {"SLIDE": "hello"}, "slides", "E100", id="slides-text"),
    R(MMS, {"SLIDE": [slide(VIDEO=url(IMG))]}, "slides[0]", "E227", id="image-video"),
    R(
        SAVE,
        {"SLIDE": [{"AUDIO": url(IMG), "VIDEO": url(IMG)}]},
        "slides[0]",
        "E226",
        id="audio-video",
    ),
    R(
        SAVE,
        {"SLIDE": [{"VCARD": url(IMG), "VIDEO": url(IMG)}]},
        "slides[0]",
        "E224",
        id="video-object",
    ),
    R(MMS, {"SLIDE": [slide(PDF=url(IMG))]}, "slides[0]", "E224", id="image-object"),
    R(
        SAVE,
        {"SLIDE": [{"VCARD": url(IMG), "PDF": url(IMG)}]},
        "slides[0]",
        "E223",
        id="two-objects",
    ),
    R(MMS, {"SLIDE": [slide(TEXT="t" * 5001)]}, "slides[0].text", "E228", id="slide-text-5001"),
    R(MMS, {"SLIDE": [slide(DURATION="0")]}, "slides[0].duration", "E230", id="duration-0"),
    R(MMS, {"SLIDE": [slide(DURATION="61")]}, "slides[0].duration", "E230", id="duration-61"),
    R(MMS, {"SLIDE": [slide(DURATION="5s")]}, "slides[0].duration", "E230", id="duration-unit"),
    R(MMS, {"SLIDE": [slide(IMAGE=url("/a/1.jpg"))]}, "slides[0].image.url", "E229", id="rel-url"),
    R(MMS, {"SLIDE": [slide(IMAGE=url("ftp://x/1.jpg"))]}, "slides[0].image.url", "E229", id="ftp"),
    R(MMS, {"SLIDE": [slide(IMAGE=url("http://[::1/"))]}, "slides[0].image.url", "E229", id="v6"),
    R(MMS, {"SLIDE": [slide(IMAGE=url("http:// x/"))]}, "slides[0].image.url", "E229", id="space"),
    R(MMS, {"SLIDE": [slide(IMAGE={"URL": ""})]}, "slides[0].image.url", "E229", id="no-url"),
    R(MMS, {"SLIDE": [slide(IMAGE={"X": "y"})]}, "slides[0].image.url", "E229", id="url-key"),
    R(MMS, {"SLIDE": [slide(IMAGE=IMG)]}, "slides[0].image", "E100", id="media-as-text"),
    R(
        SAVE,
        {"SLIDE": [SLIDE, {"AUDIO": url("https://x.example/1.mp3"), "TEXT": ["a", "b"]}]},
        "slides[1].text",
        "E100",
        id="slide-text-list",
    ),
    # DYNAMICVCARD (§3.2)
    R(SSM, {"DYNAMICVCARD": "card"}, "dynamic_vcard", "E100", id="vcard-text"),
    R(SSM, {"DYNAMICVCARD": {"NOTE": " "}}, "dynamic_vcard", "E1501", id="vcard-no-data"),
    R(SSM, {"DYNAMICVCARD": vcard(NAME=DROP)}, "dynamic_vcard.name", "E1515", id="vcard-name"),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(NAME={"FIRSTNAME": "J@hn"})},
        "dynamic_vcard.name.firstname",
        "E1515",
        id="vcard-name-charset",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(NAME={"LASTNAME": "Smith", "SUFFIX": "Jr,"})},
        "dynamic_vcard.name.suffix",
        "E1515",
        id="vcard-suffix-charset",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHONE=[{"NUMBER": "17743199144"}] * 5)},
        "dynamic_vcard.phone",
        "E1506",
        id="vcard-5-phones",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(EMAIL=[{"ID": "a@b.co"}] * 5)},
        "dynamic_vcard.email",
        "E1508",
        id="vcard-5-emails",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHYSICALADDRESS=[{"ADDRESS": "x"}] * 5)},
        "dynamic_vcard.physicaladdress",
        "E1516",
        id="vcard-5-addresses",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHONE=[{"NUMBER": "", "LABEL": "work"}])},
        "dynamic_vcard.phone[0].number",
        "E1507",
        id="vcard-phone-blank",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHONE={"NUMBER": "12"})},
        "dynamic_vcard.phone[0].number",
        "E1506",
        id="vcard-phone-short",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHONE=[{"NUMBER": "call me"}])},
        "dynamic_vcard.phone[0].number",
        "E1506",
        id="vcard-phone-letters",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(EMAIL=[{"ID": "john"}])},
        "dynamic_vcard.email[0].id",
        "E1508",
        id="vcard-email",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHONE=[{"NUMBER": "17743199144"}, {"NUMBER": "1", "LABEL": "x"}])},
        "dynamic_vcard.phone[1].number",
        "E1506",
        id="vcard-second-phone",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHONE=[{"NUMBER": "177"}, {"NUMBER": "178", "LABEL": "cell"}])},
        "dynamic_vcard.phone[1].label",
        "E1516",
        id="vcard-label",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHOTOURL="https://x.example/p.bmp")},
        "dynamic_vcard.photo_url",
        "E1502",
        id="vcard-photo-type",
    ),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHOTOURL="p.png")},
        "dynamic_vcard.photo_url",
        "E1502",
        id="vcard-photo-relative",
    ),
    R(SSM, {"DYNAMICVCARD": vcard(PHONE="x")}, "dynamic_vcard.phone", "E100", id="vcard-phones"),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(NAME="John")},
        "dynamic_vcard.name",
        "E100",
        id="vcard-name-text",
    ),
    # any value: XML 1.0 characters, size, shape
    R(SMS, {"TEXT": "a\x00b"}, "text", "E108", id="xml-nul"),
    R(SMS, {"TEXT": "a\x1bb"}, "text", "E108", id="xml-escape"),
    R(SSM, {"DATA": {"NOTE": "\ud800"}}, "data['NOTE']", "E108", id="xml-lone-surrogate"),
    R(MMS, {"SLIDE": [slide(TEXT="\uffff")]}, "slides[0].text", "E108", id="xml-uffff"),
    R(
        SSM,
        {"DYNAMICVCARD": vcard(PHONE=[{}, {"LABEL": "\ufffe"}])},
        "dynamic_vcard.phone[1].label",
        "E108",
        id="xml-ufffe-nested",
    ),
    R(SSM, {"MMSID": "1" * 100_001}, "mms_id", "E100", id="value-too-long"),
    R(SSM, {"MMSID": 35674}, "mms_id", "E100", id="value-int"),
    R(SSM, {"TO": ["16501234123", "16501234124"]}, "to", "E100", id="to-list"),
    R(SSM, {"MMSID": {"ID": "1"}}, "mms_id", "E100", id="leaf-dict"),
    R(SSM, {"DATA": {"C": nested(40)}}, "data['C']" + "[0]" * 31, "E100", id="too-deep"),
]


@pytest.mark.parametrize(("action", "changes", "field", "code"), INVALID)
def test_rule_violation(action: str, changes: dict[str, Any], field: str, code: str) -> None:
    """Each single mutation of a valid request fails with the expected field and code."""
    request = build(action if action in BASE else IDS, **changes)
    with pytest.raises(ValidationError) as info:
        validate_request(ApiRequest(action, request.fields))
    assert (info.value.field, info.value.code) == (field, code), info.value.message
    assert describe_code(code), "every code used must be in errors.CODE_TABLE"
    assert field.split(".")[0].split("[")[0] in info.value.message


@pytest.mark.parametrize(("action", "changes", "field", "code"), HYPHENATED_INVALID)
def test_hyphenated_rule_violation(
    action: str, changes: dict[str, Any], field: str, code: str
) -> None:
    """The hyphenated dialect additionally requires service id and fallback text."""
    with pytest.raises(ValidationError) as info:
        validate_request(build(action, "hyphenated", **changes), "hyphenated")
    assert (info.value.field, info.value.code) == (field, code)


def test_hyphenated_extras_not_required_in_skycore_dialect() -> None:
    """The 1.3 dialect accepts sendSavedMMS without service id and fallback text."""
    validate_request(build(SSM))


@pytest.mark.parametrize("dialect", ["skycore", "hyphenated"])
@pytest.mark.parametrize("action", ACTIONS)
def test_valid_base_requests(action: str, dialect: Any) -> None:
    """The base request of every action passes in both dialects."""
    validate_request(build(action, dialect), dialect)


VALID = [
    R(SSM, FULL_SEND_SAVED, id="ssm-every-optional-field"),
    R(SSM, {"TO": numbers(100)}, id="to-100-numbers"),
    R(SSM, {"TO": "16501234123, 447911123456"}, id="to-list-with-spaces"),
    R(SSM, {"MMSID": str(2**63 - 1)}, id="mmsid-bigint"),
    R(SSM, {"FALLBACKSMSTEXT": "f" * 500}, id="long-fallback-is-only-advice"),
    R(SSM, {"DISABLEFALLBACKSMS": "No", "FORCE_SEND_AS_SMS": "TRUE"}, id="flags-any-case"),
    R(SSM, {"DDMTIMEOUT": "0", "FROM_MASK": "A"}, id="ddm-timeout-zero"),
    R(SSM, {"CUSTOMTEXT": {"VALUE": "one", "SLIDE": "8"}}, id="custom-text-single-mapping"),
    R(SSM, {"CUSTOMTEXT": [], "DATA": {}, "DYNAMICVCARD": None}, id="empty-composites"),
    R(SSM, {"DYNAMICVCARD": {"NAME": {"LASTNAME": "Smith"}}}, id="vcard-last-name-only"),
    R(SSM, {"DYNAMICVCARD": {"NAME": {"FIRSTNAME": "José"}, "PHONE": {"NUMBER": "911"}}}),
    R(SSM, {"OPTIONAL_UNKNOWN": {"ANY": ["shape"]}}, id="unknown-fields-ignored"),
    R(SSM, {"CLIENT_REFERENCE": None, "SUBJECT": "\t"}, id="none-and-blank-are-absent"),
    R(IDS, {"API_KEY": DROP, "USER": "bob", "PASS": hashlib.md5(b"pw").hexdigest()}, id="md5"),
    R(IDS, {"PASS": hashlib.md5(b"pw").hexdigest().upper(), "USER": "bob"}, id="md5-upper"),
    R("SENDSMS", {}, id="action-any-case"),
    R(MMS, {"SLIDE": ALL_SLIDE_KINDS}, id="eight-slides-of-every-kind"),
    R(MMS, {"SLIDE": SLIDE}, id="single-slide-mapping"),
    R(MMS, {"SUBJECT": DROP, "FALLBACKSMSTEXT": "See it here"}, id="mms-fallback-no-subject"),
    R(SAVE, {"SUBJECT": "s" * 80, "SLIDE": (SLIDE,)}, id="subject-80-tuple-slides"),
    R(SMS, {"TEXT": "emoji are fine in SMS text 😀\r\n\t"}, id="sms-emoji"),
]


@pytest.mark.parametrize(("action", "changes"), VALID)
def test_valid_variants(action: str, changes: dict[str, Any]) -> None:
    """Edge-of-the-rules requests that Skycore accepts pass validation."""
    base = action if action in BASE else SMS
    request = build(base, **changes)
    validate_request(ApiRequest(action, request.fields))


def test_message_names_the_limit() -> None:
    """A too-long client_reference explains the limit in the message."""
    with pytest.raises(ValidationError) as info:
        validate_request(build(SSM, CLIENT_REFERENCE="r" * 70))
    assert info.value.message == "client_reference is 70 characters; Skycore accepts at most 64"


def test_slide_messages_count_from_one() -> None:
    """Slide errors use a 0-based index in the field and a 1-based number in the message."""
    with pytest.raises(ValidationError) as info:
        validate_request(build(SAVE, SLIDE=[SLIDE, SLIDE, {}]))
    assert info.value.field == "slides[2]"
    assert "slide 3" in info.value.message


def test_password_is_never_echoed() -> None:
    """A bad PASS is reported without its value."""
    with pytest.raises(ValidationError) as info:
        validate_request(build(IDS, USER="bob", PASS="hunter2-secret"))
    assert "hunter2" not in str(info.value)


def test_non_mapping_fields() -> None:
    """A request whose fields are not a mapping is E100, not a crash."""
    with pytest.raises(ValidationError) as info:
        validate_request(ApiRequest(SSM, ["MMSID"]))  # type: ignore[arg-type]
    assert info.value.code == "E100"


def test_first_broken_rule_wins() -> None:
    """XML problems come before a missing action field, which comes before format rules."""
    request = build(SSM, MMSID=DROP, TO="bad", DATA={"X": "\x01"})
    with pytest.raises(ValidationError) as info:
        validate_request(request)
    assert info.value.code == "E108"
    with pytest.raises(ValidationError) as info:
        validate_request(build(SSM, MMSID=DROP, TO="bad"))
    assert info.value.code == "E620"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (774) 319-9144", "17743199144"),
        ("0044 20 7946 0958", "442079460958"),
        ("011 44 20 7946 0958", "442079460958"),
        ("1.774.319.9144", "17743199144"),
        ("17743199144", "17743199144"),
        ("+49-30-1234567", "49301234567"),
        ("\u00a0+44\t7911 123456 ", "447911123456"),
        ("1234567", "1234567"),
        ("123456789012345", "123456789012345"),
    ],
)
def test_normalize_number(raw: str, expected: str) -> None:
    """Human-written numbers normalize to international digits."""
    assert normalize_number(raw) == expected
    assert is_valid_number(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "+1 774 ABC 9144",
        "123456",
        "1234567890123456",
        "0774 319 9144",
        "1+7743199144",
        "++17743199144",
        "+1 774 319 9144 ext 2",
        "١٧٧٤٣١٩٩١٤٤",
        "00",
    ],
)
def test_normalize_number_rejects(raw: str) -> None:
    """Numbers that cannot be made international raise E110 on field 'to'."""
    with pytest.raises(ValidationError) as info:
        normalize_number(raw)
    assert (info.value.field, info.value.code) == ("to", "E110")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("17743199144", True),
        ("1234567", True),
        ("+17743199144", False),
        ("07743199144", False),
        ("123456", False),
        ("1234567890123456", False),
        ("1774319914\n", False),
        ("", False),
    ],
)
def test_is_valid_number(value: str, valid: bool) -> None:
    """Only already-normalized international numbers are valid."""
    assert is_valid_number(value) is valid


@given(st.text())
def test_normalize_number_total(raw: str) -> None:
    """normalize_number returns a valid number or raises E110, for any text."""
    try:
        result, code = normalize_number(raw), ""
    except ValidationError as error:
        result, code = "", error.code
    assert is_valid_number(result) if not code else code == "E110"


TAGS = sorted({tag for fields in BASE.values() for tag in fields} | set(FULL_SEND_SAVED))
TAGS += ["USER", "PASS", "SUBJECT", "TEXT", "NAME", "SLIDE", *HYPHENATED_EXTRA]
NESTED = ["URL", "TEXT", "DURATION", "VALUE", "SLIDE", "NUMBER", "LABEL", "ID", "ADDRESS"]
NESTED += ["NAME", "FIRSTNAME", "LASTNAME", "PHONE", "EMAIL", "PHYSICALADDRESS", *SLIDE_MEDIA]
LEAVES = st.none() | st.text(max_size=12) | st.integers() | st.booleans()
LEAVES |= st.sampled_from(["", " ", "1", "9", "yes", "true", IMG, "16501234123", "a@b.co"])
KEYS = st.sampled_from(TAGS + NESTED) | st.text(max_size=6)
JUNK = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=24,
)


def _outcome(request: ApiRequest, dialect: Any) -> str:
    """The E-code validate_request raises, or '' when the request passes."""
    try:
        validate_request(request, dialect)
    except ValidationError as error:
        return error.code
    return ""


@given(
    st.sampled_from(ACTIONS) | st.text(max_size=12) | st.none(),
    st.dictionaries(st.sampled_from(TAGS) | st.text(max_size=8), JUNK, max_size=8),
    st.sampled_from(["skycore", "hyphenated"]),
)
def test_junk_only_raises_validation_error(
    action: Any, fields: dict[str, Any], dialect: Any
) -> None:
    """Arbitrary nested junk never raises anything but ValidationError."""
    code = _outcome(ApiRequest(action, fields), dialect)
    assert not code or describe_code(code)


@given(
    st.sampled_from(ACTIONS),
    st.dictionaries(st.sampled_from(TAGS), JUNK, max_size=3),
    st.sampled_from(["skycore", "hyphenated"]),
)
def test_junk_in_valid_requests(action: str, changes: dict[str, Any], dialect: Any) -> None:
    """Junk swapped into an otherwise valid request never escapes as another exception."""
    fields = {**copy.deepcopy(BASE[action]), **FULL_SEND_SAVED, **HYPHENATED_EXTRA, **changes}
    code = _outcome(ApiRequest(action, fields), dialect)
    assert not code or describe_code(code)


@pytest.mark.parametrize(
    ("fields", "field"),
    [({1: "x", "API_KEY": KEY}, "request"), ({"API_KEY": KEY, "DATA": {2: "x"}}, "data")],
)
def test_non_text_keys(fields: dict[Any, Any], field: str) -> None:
    """Field names that are not text are E100 on the enclosing field."""
    with pytest.raises(ValidationError) as info:
        validate_request(ApiRequest(IDS, fields))
    assert (info.value.field, info.value.code) == (field, "E100")
