"""Cleaning, gates, PII, dedup and decontamination as pure functions (fast, no services)."""

from __future__ import annotations

import json

import pytest

from twinops.domain import Category
from twinops.errors import ConfigError
from twinops.features.cleaning import clean_prose, clean_text, normalize_query
from twinops.features.decontam import Decontaminator, read_golden_jsonl
from twinops.features.dedup import Deduplicator, normalized_hash, signature_bytes, sketch_from_bytes
from twinops.features.gates import Reason, check_cleaned, check_raw, detect_language
from twinops.features.jobs import FeatureJob, GateConfig
from twinops.features.pii import PiiType, find_pii, luhn_valid, redaction_placeholder, replace_pii

LONG_EN = (
    "Retrieval augmented generation grounds a language model in documents it can cite, and the quality of "
    "the chunks decides most of the quality of the answers, far more than the choice of the model."
)


def test_cleaning_strips_markup_and_boilerplate_but_keeps_code() -> None:
    code = "```python\ndef f(x):\n    return  x  # two spaces stay\n\n\n    pass\n```"
    text = (
        "<p>Hello&nbsp;<b>world</b></p>\u200b\n\nRead **this** and [the docs](https://x.io/a_(b)).\n"
        "![diagram](img.png)\n\nShare this post\nSubscribe now!\n5 min read\n\n"
        f"{code}\n\n\n\nThanks for reading my newsletter!\n"
    )
    cleaned = clean_text(text, Category.ARTICLES)
    assert "Hello world" in cleaned and "<b>" not in cleaned and "\u200b" not in cleaned
    assert "Read this and the docs." in cleaned and "diagram" in cleaned and "https://" not in cleaned
    for noise in ("Share this", "Subscribe", "min read", "Thanks for reading"):
        assert noise not in cleaned
    assert code in cleaned, "fenced code is kept byte for byte"
    before, after = cleaned.split(code)
    assert "\n\n\n" not in before and "\n\n\n" not in after, "prose blank lines collapse"


def test_repository_cleaning_keeps_indentation_and_drops_minified_lines() -> None:
    source = "def f():\n    if True:\n        return 1   \n" + "x" * 500 + "\n"
    assert clean_text(source, Category.REPOSITORIES) == "def f():\n    if True:\n        return 1"


def test_query_normalizer_is_the_document_prose_cleaning() -> None:
    query = "  What is **RAG**?\n<i>Explain</i>  [briefly](http://a.b) "
    assert normalize_query(query) == "What is RAG? Explain briefly"
    assert normalize_query(query) == " ".join(clean_prose(query).split())


def test_raw_gates_reject_empty_oversize_and_binary() -> None:
    config = GateConfig(max_bytes=100)
    assert check_raw(" \n\t", config).reason == Reason.EMPTY
    assert check_raw("é" * 60, config).reason == Reason.OVERSIZE  # 120 bytes
    assert check_raw("ok\x00\x01\x02" * 5, config).reason == Reason.BINARY_RESIDUE
    assert check_raw("plain text", config) is None


def test_text_gates_length_and_language() -> None:
    config = GateConfig(min_words=5, max_words=40)
    assert check_cleaned("too short", Category.POSTS, config)[0].reason == Reason.TOO_SHORT
    assert check_cleaned(LONG_EN + " more" * 40, Category.POSTS, config)[0].reason == Reason.TOO_LONG
    french = (
        "Les bases de données vectorielles stockent des plongements pour retrouver des passages par le sens."
    )
    rejection, language = check_cleaned(french, Category.ARTICLES, config)
    assert rejection.reason == Reason.LANGUAGE and language == "fr"
    assert check_cleaned(LONG_EN, Category.ARTICLES, config) == (None, "en")
    assert detect_language("```\nx = 1\n```") == (None, 0.0), "code alone has no language"


def test_pii_detectors_and_luhn() -> None:
    text = (
        "jane.doe@example.com, +44 20 7946 0958, 198.51.100.23, 2001:db8::1, 127.0.0.1, "
        "5500 0000 0000 0004, 5500 0000 0000 0005, AKIAIOSFODNN7EXAMPLE, "
        'token: "ab12cd34ef56gh78", password = "notasecretatall", git@github.com:me/repo.git'
    )
    found = {(m.kind, m.value) for m in find_pii(text, region="GB")}
    assert (PiiType.EMAIL, "jane.doe@example.com") in found
    assert (PiiType.PHONE, "+44 20 7946 0958") in found
    assert {(PiiType.IP_ADDRESS, "198.51.100.23"), (PiiType.IP_ADDRESS, "2001:db8::1")} <= found
    assert (PiiType.CREDIT_CARD, "5500 0000 0000 0004") in found
    assert (PiiType.API_KEY, "AKIAIOSFODNN7EXAMPLE") in found and (
        PiiType.API_KEY,
        "ab12cd34ef56gh78",
    ) in found
    values = {value for _, value in found}
    assert "127.0.0.1" not in values and "5500 0000 0000 0005" not in values, "loopback / bad Luhn"
    assert "notasecretatall" not in values and not any("git@" in v for v in values)
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    redacted = replace_pii(text, find_pii(text, region="GB"), redaction_placeholder)
    assert "[EMAIL]" in redacted and "jane.doe" not in redacted


def test_dedup_exact_and_near_with_signature_round_trip() -> None:
    config = GateConfig(near_dup_threshold=0.7)
    dedup = Deduplicator(config)
    base = LONG_EN + " " + LONG_EN.replace("model", "system")
    assert dedup.check("a", base)[0] is None
    assert dedup.check("b", base.upper() + "  !!")[0].reason == Reason.EXACT_DUPLICATE
    near = base.replace("cite", "quote") + " A closing remark."
    rejection, _, _ = dedup.check("c", near)
    assert rejection.reason == Reason.NEAR_DUPLICATE and "a" in rejection.detail
    assert dedup.check("d", "An unrelated text about sourdough bread, ovens and hydration levels.")[0] is None
    # Signatures stored in MongoDB come back equal (dedup across runs).
    sketch = dedup.sketch(base)
    restored = sketch_from_bytes(signature_bytes(sketch), config.minhash_permutations)
    assert restored.jaccard(sketch) == 1.0
    fresh = Deduplicator(config)
    fresh.remember("a", normalized_hash(base), restored)
    assert fresh.check("e", near)[0].reason == Reason.NEAR_DUPLICATE


def test_decontamination_by_ngrams_and_canary(tmp_path) -> None:
    golden = tmp_path / "golden.jsonl"
    golden.write_text(json.dumps({"instruction": "Explain RAG.", "reference": LONG_EN}) + "\n")
    checker = Decontaminator(read_golden_jsonl(golden), GateConfig(decontam_ngram=8), canary="CANARY-42")
    assert checker.check("Intro. " + LONG_EN + " Outro.").reason == Reason.CONTAMINATED
    assert checker.check("A fresh text " * 20) is None
    assert checker.check("leaked CANARY-42 string").reason == Reason.CONTAMINATED
    with pytest.raises(ConfigError, match="does not exist"):
        read_golden_jsonl(tmp_path / "missing.jsonl")


def test_feature_job_yaml(tmp_path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "author: Ada Lovelace\ngates:\n  near_dup_threshold: 0.9\nchunking:\n  chunk_tokens: 128\n"
    )
    job = FeatureJob.from_yaml(path)
    assert job.author == "Ada Lovelace" and job.gates.near_dup_threshold == 0.9
    assert job.fingerprint("m", "1") != FeatureJob().fingerprint("m", "1")
    path.write_text("chunking:\n  chunk_tokens: 10\n  overlap_tokens: 20\n")
    with pytest.raises(ConfigError, match="invalid"):
        FeatureJob.from_yaml(path)


@pytest.mark.parametrize(
    ("mode", "kept", "marker"),
    [("redact", True, "[EMAIL]"), ("reject", False, None), ("off", True, "jane.doe@example.com")],
)
def test_pii_modes_through_the_gate(mode: str, kept: bool, marker: str | None) -> None:
    from twinops.domain import Author, RawDocument
    from twinops.features.clean_gate import gate_document

    author = Author(full_name="Jane Doe")
    document = RawDocument(
        platform="web",
        category="articles",
        source_url="https://jane.dev/1",
        author_id=author.id,
        author_name=author.full_name,
        content=LONG_EN + " Reach me at jane.doe@example.com.",
    )
    job = FeatureJob(gates=GateConfig(pii_mode=mode))
    decision = gate_document(document, job, vault=None, dedup=Deduplicator(job.gates), decontaminator=None)
    assert decision.kept is kept
    if kept:
        assert marker in decision.cleaned.content
    else:
        assert decision.reason == Reason.PII and "1 EMAIL" in decision.detail
    assert decision.pii == ({} if mode == "off" else {"EMAIL": 1})
