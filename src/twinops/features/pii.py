"""PII detection, redaction and a reversible vault.

Detectors: emails, phone numbers (Google's ``phonenumbers`` matcher), IP addresses (validated by
``ipaddress``), credit cards (Luhn-checked), API keys/tokens (known provider formats, JWTs, private
keys, ``key = value`` assignments). In vault mode each value becomes ``[TYPE_<hmac>]``: the token
is an HMAC under a key kept in the ``pii_vault`` collection, so equal values get equal tokens on
every run (no churn) and the mapping lives apart from the features. ``PiiVault.detokenize`` gives the
values back to whoever holds the database (an audit of a gate decision, a person asking for their
data). No served output calls it: answers and their sources show the placeholders, because anyone
who can ask the twin would otherwise read what the gate took out of its features.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pymongo.database import Database

from twinops.domain.documents import utcnow


class PiiType(StrEnum):
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    IP_ADDRESS = "IP_ADDRESS"
    CREDIT_CARD = "CREDIT_CARD"
    API_KEY = "API_KEY"
    PRIVATE_KEY = "PRIVATE_KEY"


@dataclass(frozen=True)
class PiiMatch:
    kind: PiiType
    start: int
    end: int
    value: str


_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
_NOT_PERSONAL_EMAIL = {"git", "noreply", "no-reply"}
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
_TOKEN_FORMATS = re.compile(
    r"\b(?:"
    r"(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,255}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|sk-(?:proj-)?[A-Za-z0-9_-]{20,}"  # OpenAI-style secret keys
    r"|[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r")"
)
# ``api_key = "..."`` style assignments: only the value is secret.
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|password|passwd)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9_\-./+=]{12,})"
)
_PRIORITY = [
    PiiType.PRIVATE_KEY,
    PiiType.API_KEY,
    PiiType.EMAIL,
    PiiType.CREDIT_CARD,
    PiiType.IP_ADDRESS,
    PiiType.PHONE,
]
_PLACEHOLDER = re.compile(r"\[(" + "|".join(t.value for t in PiiType) + r")_([0-9a-f]{10})\]")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _looks_secret(value: str) -> bool:
    # Real secrets mix letters and digits; "YOUR_API_KEY_HERE" or "get_token_value" do not.
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and len(set(value)) > 6


def _ip_matches(text: str) -> list[PiiMatch]:
    found = []
    for pattern in (_IPV4, _IPV6):
        for match in pattern.finditer(text):
            try:
                address = ipaddress.ip_address(match.group(0))
            except ValueError:
                continue
            # Loopback and 0.0.0.0 are configuration, not anyone's address.
            if not (address.is_loopback or address.is_unspecified):
                found.append(PiiMatch(PiiType.IP_ADDRESS, match.start(), match.end(), match.group(0)))
    return found


def _phone_matches(text: str, region: str) -> list[PiiMatch]:
    import phonenumbers

    matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    return [PiiMatch(PiiType.PHONE, m.start, m.end, m.raw_string) for m in matcher]


def find_pii(text: str, *, region: str = "US") -> list[PiiMatch]:
    """Non-overlapping PII spans in ``text``, in text order (stronger detectors win overlaps)."""
    candidates: list[PiiMatch] = [
        PiiMatch(PiiType.PRIVATE_KEY, m.start(), m.end(), m.group(0)) for m in _PRIVATE_KEY.finditer(text)
    ]
    candidates += [
        PiiMatch(PiiType.API_KEY, m.start(), m.end(), m.group(0)) for m in _TOKEN_FORMATS.finditer(text)
    ]
    candidates += [
        PiiMatch(PiiType.API_KEY, m.start("value"), m.end("value"), m.group("value"))
        for m in _ASSIGNED_SECRET.finditer(text)
        if _looks_secret(m.group("value"))
    ]
    candidates += [
        PiiMatch(PiiType.EMAIL, m.start(), m.end(), m.group(0))
        for m in _EMAIL.finditer(text)
        if m.group(0).split("@")[0].casefold() not in _NOT_PERSONAL_EMAIL
    ]
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            candidates.append(PiiMatch(PiiType.CREDIT_CARD, match.start(), match.end(), match.group(0)))
    candidates += _ip_matches(text)
    candidates += _phone_matches(text, region)

    chosen: list[PiiMatch] = []
    for match in sorted(candidates, key=lambda m: (_PRIORITY.index(m.kind), m.start)):
        if all(match.end <= other.start or match.start >= other.end for other in chosen):
            chosen.append(match)
    return sorted(chosen, key=lambda m: m.start)


def replace_pii(text: str, matches: list[PiiMatch], placeholder: Callable[[PiiMatch], str]) -> str:
    """``text`` with each match replaced by ``placeholder(match)``."""
    pieces, position = [], 0
    for match in matches:
        pieces += [text[position : match.start], placeholder(match)]
        position = match.end
    pieces.append(text[position:])
    return "".join(pieces)


def redaction_placeholder(match: PiiMatch) -> str:
    """Irreversible placeholder (``pii_mode: redact``)."""
    return f"[{match.kind.value}]"


class PiiVault:
    """Placeholder ↔ value mapping in its own collection (``pii_vault``), apart from the features.

    ``token_for`` only queues new mappings; ``flush`` writes them (the runner flushes before it
    writes any feature, so a stored placeholder can always be resolved).
    """

    collection_name = "pii_vault"
    _key_id = "__hmac_key__"

    def __init__(self, db: Database) -> None:
        self._collection = db[self.collection_name]
        self._key: bytes | None = None
        self._pending: dict[str, dict] = {}

    def _secret(self) -> bytes:
        if self._key is None:
            candidate = secrets.token_hex(32)
            self._collection.update_one(
                {"_id": self._key_id}, {"$setOnInsert": {"key": candidate}}, upsert=True
            )
            self._key = bytes.fromhex(self._collection.find_one({"_id": self._key_id})["key"])
        return self._key

    def token_for(self, match: PiiMatch) -> str:
        digest = hmac.new(self._secret(), f"{match.kind}|{match.value}".encode(), hashlib.sha256)
        token = f"[{match.kind.value}_{digest.hexdigest()[:10]}]"
        self._pending.setdefault(token, {"_id": token, "kind": match.kind.value, "value": match.value})
        return token

    def flush(self) -> int:
        """Write queued mappings (idempotent); return how many were new."""
        new = 0
        for row in self._pending.values():
            result = self._collection.update_one(
                {"_id": row["_id"]}, {"$setOnInsert": {**row, "created_at": utcnow()}}, upsert=True
            )
            new += result.upserted_id is not None
        self._pending.clear()
        return new

    def detokenize(self, text: str) -> str:
        """``text`` with every known placeholder replaced by its original value (for the data's owner)."""
        tokens = {m.group(0) for m in _PLACEHOLDER.finditer(text)}
        if not tokens:
            return text
        values = {row["_id"]: row["value"] for row in self._collection.find({"_id": {"$in": sorted(tokens)}})}
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), text)
