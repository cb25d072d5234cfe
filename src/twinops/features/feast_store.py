"""The Feast side: a generated feature repo, stats tables, ``feast apply`` and materialize.

The repo definitions live in ``twinops/features/feast_repo/definitions.py`` (a real Feast repo
file). ``write_repo`` copies it next to a ``feature_store.yaml`` made from settings (sqlite online
store under TWINOPS_HOME by default, Redis with ``TWINOPS_FEAST_ONLINE_STORE=redis``), so
``feast -c $TWINOPS_HOME/feast plan`` works on the same repo the pipeline applies.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import statistics
import sys
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from twinops.errors import ConfigError, ServiceUnavailable
from twinops.features.results import MaterializeSummary
from twinops.features.state import DocumentState, FeatureStateRepository
from twinops.settings import Settings

PACKAGED_REPO = Path(__file__).parent / "feast_repo"
_TOPIC_WORD = re.compile(r"[a-z][a-z0-9+#-]{3,}")
_STOPWORDS = frozenset(
    """
    about above after again against because been before being below between both could does doing
    down during each from further have having here hers herself himself into itself just more most
    myself once only other ours ourselves over same should some such than that their theirs them
    themselves then there these they this those through under until very were what when where which
    while will with would your yours yourself yourselves also like make made many much need really
    thing things think well want using used uses even every first going know lets time ways
    """.split()  # noqa: SIM905 (a word list reads better as text)
)


def repo_path(settings: Settings) -> Path:
    return (settings.feast_repo or settings.home / "feast").expanduser().resolve()


def redis_connection_string(url: str) -> str:
    """``redis://[:password@]host:port/db`` → Feast's ``host:port,db=N[,password=..]``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ConfigError(f"TWINOPS_REDIS_URL={url!r} is not a redis:// URL", setting="TWINOPS_REDIS_URL")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    if parsed.path.strip("/"):
        parts.append(f"db={parsed.path.strip('/')}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def feature_store_yaml(settings: Settings) -> str:
    if settings.feast_online_store == "redis":
        online = f'    type: redis\n    connection_string: "{redis_connection_string(settings.redis_url)}"\n'
    else:
        online = "    type: sqlite\n    path: data/online_store.db\n"
    return (
        "# Written by twinops (twinops.features.feast_store); edit settings, not this file.\n"
        "project: twinops\nregistry: data/registry.db\nprovider: local\n"
        f"online_store:\n{online}"
        "offline_store:\n    type: file\nentity_key_serialization_version: 3\nauth:\n    type: no_auth\n"
    )


def write_repo(settings: Settings) -> Path:
    """The working feature repo (definitions + feature_store.yaml + data/), refreshed."""
    path = repo_path(settings)
    (path / "data").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PACKAGED_REPO / "definitions.py", path / "definitions.py")
    (path / "feature_store.yaml").write_text(feature_store_yaml(settings), encoding="utf-8")
    return path


def top_topics(texts: list[str], limit: int = 8) -> list[str]:
    """Words that appear in most of the author's documents (document frequency, then count)."""
    document_frequency: Counter[str] = Counter()
    term_frequency: Counter[str] = Counter()
    for text in texts:
        words = [w for w in _TOPIC_WORD.findall(text.casefold()) if w not in _STOPWORDS]
        term_frequency.update(words)
        document_frequency.update(set(words))
    ranked = sorted(document_frequency, key=lambda w: (-document_frequency[w], -term_frequency[w], w))
    return ranked[:limit]


def stats_frames(rows: list[DocumentState], now: datetime):
    """(document_stats, author_stats) DataFrames from the kept documents."""
    import pandas as pd

    from twinops.features.feast_repo.definitions import PLATFORMS

    kept = [row for row in rows if row.status == "kept" and row.cleaned]
    documents = []
    for row in kept:
        cleaned = row.cleaned
        published = cleaned.published_at or row.processed_at
        age = max((now - published).total_seconds() / 86_400, 0.0)
        documents.append(
            {
                "document_id": row.document_id,
                "author_id": row.author_id,
                "platform": row.platform,
                "category": cleaned.category.value,
                "language": cleaned.language or "",
                "length_chars": len(cleaned.content),
                "length_words": len(cleaned.content.split()),
                "chunk_count": len(row.chunks),
                "age_days": float(age),
                "freshness": float(0.5 ** (age / 180)),
                "event_timestamp": now,
                "created": now,
            }
        )
    authors = []
    for author_id in sorted({row.author_id for row in kept}):
        mine = [row for row in kept if row.author_id == author_id]
        platforms = Counter(row.platform for row in mine)
        authors.append(
            {
                "author_id": author_id,
                "author_name": mine[0].author_name,
                "documents_total": len(mine),
                **{f"documents_{p}": platforms.get(p, 0) for p in PLATFORMS},
                "typical_length_words": int(statistics.median(len(r.cleaned.content.split()) for r in mine)),
                "top_topics": top_topics([f"{r.cleaned.title}\n{r.cleaned.content}" for r in mine]),
                "event_timestamp": now,
                "created": now,
            }
        )
    return pd.DataFrame(documents), pd.DataFrame(authors)


def open_store(settings: Settings):
    from feast import FeatureStore

    return FeatureStore(repo_path=str(write_repo(settings)))


def _definitions() -> list:
    from twinops.features.feast_repo import definitions as d

    return [
        d.project,
        d.author,
        d.document,
        d.document_stats_source,
        d.author_stats_source,
        d.document_stats,
        d.author_stats,
        d.prompt_request,
        d.author_context,
        d.twin_prompt_features,
    ]


def materialize(settings: Settings, *, db=None, now: datetime | None = None) -> MaterializeSummary:
    """Write the stats parquet files from the feature state, ``feast apply``, then materialize."""
    from twinops.infra.mongo import connect

    now = now or datetime.now(UTC)
    db = db if db is not None else connect(settings)
    # Every author's rows: the offline tables are global, a scoped run must not drop the others.
    rows = list(FeatureStateRepository(db).iter_scope(status="kept"))
    documents, authors = stats_frames(rows, now)
    if documents.empty:
        return MaterializeSummary(
            repo_path=str(repo_path(settings)),
            online_store=settings.feast_online_store,
            documents=0,
            authors=0,
        )
    path = write_repo(settings)
    documents.to_parquet(path / "data" / "document_stats.parquet", index=False)
    authors.to_parquet(path / "data" / "author_stats.parquet", index=False)
    store = open_store(settings)
    try:
        # Feast reports progress on stdout; keep stdout clean for `--json`.
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            # Feast flags every on-demand view as experimental; ours is a plain string builder.
            warnings.filterwarnings("ignore", "On demand feature view", RuntimeWarning)
            store.apply(_definitions())
            store.materialize(start_date=now - timedelta(days=1), end_date=now + timedelta(seconds=5))
    except Exception as error:
        if settings.feast_online_store == "redis" and "redis" in type(error).__module__.lower():
            raise ServiceUnavailable(
                f"Feast's Redis online store at {settings.redis_url} is unreachable "
                f"({type(error).__name__}): start Redis or fix TWINOPS_REDIS_URL",
                setting="TWINOPS_REDIS_URL",
            ) from error
        raise
    return MaterializeSummary(
        repo_path=str(path),
        online_store=settings.feast_online_store,
        documents=len(documents),
        authors=len(authors),
    )


def author_context(settings: Settings, author_id: str, *, max_topics: int = 5) -> str | None:
    """The prompt context the on-demand view builds for ``author_id`` (online store)."""
    store = open_store(settings)
    with contextlib.redirect_stdout(sys.stderr):
        result = store.get_online_features(
            features=["author_context:author_context"],
            entity_rows=[{"author_id": author_id, "max_topics": max_topics}],
        ).to_dict()
    return result["author_context"][0]


def online_document_stats(settings: Settings, document_ids: list[str]) -> dict[str, list]:
    store = open_store(settings)
    features = [f"document_stats:{name}" for name in ("chunk_count", "language", "length_words", "platform")]
    return store.get_online_features(
        features=features, entity_rows=[{"document_id": i} for i in document_ids]
    ).to_dict()
