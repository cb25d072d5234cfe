"""``build_datasets``: the feature run's chunks in, four versioned training datasets out.

Order matters: documents are split first (golden vs. training), the golden set is saved first, the
training sets are decontaminated against it, the canary check runs over every training row, and
only then is anything written for the training kinds. MLflow is resolved before any work so an
unreachable tracking server fails the build up front, not after the datasets exist.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from twinops.datasets.budget import GenerationRun
from twinops.datasets.corpus import Corpus, load_corpus
from twinops.datasets.generators import make_generator
from twinops.datasets.golden import Decontaminator, assert_no_canary, golden_row, make_canary, split_documents
from twinops.datasets.instruction import (
    PASSAGE,
    InstructionExample,
    generated_instructions,
    instruction_prompts,
    is_rebuilt,
    passage_examples,
    self_instruct_examples,
    template_views,
    usable_passages,
)
from twinops.datasets.jobs import DatasetBuildSummary, DatasetJob
from twinops.datasets.paraphrase import (
    PARAPHRASE,
    is_paraphrased,
    paraphrase_examples,
    read_written_questions,
)
from twinops.datasets.preference import PreferencePair, build_preference_pairs
from twinops.datasets.prompts import ANSWER_PROMPT, load_prompt
from twinops.datasets.queries import query_instructions
from twinops.datasets.reranker_pairs import probe_queries
from twinops.domain import Author, DatasetKind, DatasetVersion
from twinops.domain.progress import ProgressCallback
from twinops.infra.dataset_store import rows_hash, save_dataset
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.mongo import connect
from twinops.settings import Settings

if TYPE_CHECKING:
    from twinops.datasets.reranker_pairs import RerankerPair


@dataclass
class _Generated:
    examples: list[InstructionExample]
    pairs: list[PreferencePair]
    generator_ref: str
    generator_seconds: float


def build_datasets(
    job: DatasetJob, settings: Settings, *, on_progress: ProgressCallback | None = None
) -> DatasetBuildSummary:
    """Build the instruction, preference, golden and reranker sets (same inputs: same versions).

    ``on_progress`` hears from each slow step (generation batches, templates, reranker mining):
    items done of the total and a note with rows made, dropped, rate and time left.
    """
    if job.log_to_mlflow:
        from twinops.infra.endpoints import mlflow_tracking_uri

        mlflow_tracking_uri(settings)  # raises ServiceUnavailable now, before any work
    repository = DatasetVersionRepository(connect(settings))
    corpus = load_corpus(
        repository, features_version=job.features_version, author=job.author, max_chunks=job.max_chunks
    )
    golden_documents = split_documents(corpus.document_ids, job.holdout_fraction, job.seed)
    drops: Counter[str] = Counter()
    generated = _generate(corpus, golden_documents, job, settings, drops=drops, on_progress=on_progress)
    splits, canary, reranker_ref = _assemble_splits(
        corpus, generated, golden_documents, job=job, settings=settings, drops=drops, on_progress=on_progress
    )

    previous = repository.latest(DatasetKind.GOLDEN)
    assert_no_canary(
        {f"{kind.value}/train": rows["train"] for kind, rows in splits.items() if "train" in rows},
        [canary, previous.config.get("canary", "") if previous else ""],
    )

    # Lineage: every dataset names the feature run, the generator and the prompts that made it.
    base_parents = (corpus.features.id, generator_ref := generated.generator_ref)
    base_parents += tuple(prompt.ref for prompt in instruction_prompts(job))
    config = {**job.identity(), "generator_ref": generator_ref}
    name = f"twin-{Author(full_name=job.author).id[:8]}" if job.author else "twin-all"
    saved: dict[DatasetKind, tuple[DatasetVersion, bool]] = {}

    def save(kind: DatasetKind, parents: tuple[str, ...], extra: dict | None = None) -> DatasetVersion:
        saved[kind] = save_dataset(
            settings,
            repository,
            kind=kind,
            name=name,
            splits=splits[kind],
            config={**config, **(extra or {})},
            parents=parents,
            stats={
                "drops": {k: v for k, v in drops.items() if k.startswith(kind.value)},
                "sources": _sources(kind, splits[kind]),
            },
        )
        return saved[kind][0]

    golden = save(
        DatasetKind.GOLDEN, base_parents, {"canary": canary, "holdout_documents": sorted(golden_documents)}
    )
    instruction = save(DatasetKind.INSTRUCTION, (*base_parents, golden.id))
    answer_ref = load_prompt(ANSWER_PROMPT).ref
    if DatasetKind.PREFERENCE in splits:
        save(DatasetKind.PREFERENCE, (*base_parents, answer_ref, golden.id, instruction.id))
    if DatasetKind.RERANKER in splits and reranker_ref:
        save(DatasetKind.RERANKER, (corpus.features.id, reranker_ref, golden.id, instruction.id))

    summary = DatasetBuildSummary(
        features_version=corpus.features.id,
        author=job.author,
        generator=generator_ref,
        chunks=len(corpus.chunks),
        documents=len(corpus.document_ids),
        golden_documents=len(golden_documents),
        counts={kind.value: sum(len(rows) for rows in splits[kind].values()) for kind in saved},
        drops=dict(sorted(drops.items())),
        sources={kind.value: found for kind in saved if (found := _sources(kind, splits[kind]))},
        rebuilt={kind.value: rebuilt for kind in saved if (rebuilt := _rebuilt(kind, drops))},
        generator_seconds=round(generated.generator_seconds, 1),
        split_sizes={kind.value: {s: len(rows) for s, rows in splits[kind].items()} for kind in saved},
        versions={kind.value: version.id for kind, (version, _) in saved.items()},
        uris={kind.value: version.uri or "" for kind, (version, _) in saved.items()},
        new_versions=[version.id for version, is_new in saved.values() if is_new],
    )
    if job.log_to_mlflow:
        from twinops.datasets.tracking import log_build

        prompts = [*instruction_prompts(job), *([load_prompt(ANSWER_PROMPT)] if job.preference else [])]
        summary.mlflow_run_id = log_build(
            settings,
            [version for version, _ in saved.values()],
            params={
                "features_version": corpus.features.id,
                "generator": generator_ref,
                "author": job.author,
                "prompts": ",".join(prompt.ref for prompt in prompts),
            },
            metrics={
                **{f"rows_{kind}": float(count) for kind, count in summary.counts.items()},
                **{
                    f"rows_{kind}_{source}": float(count)
                    for kind, sources in summary.sources.items()
                    for source, count in sources.items()
                },
                "generator_seconds": summary.generator_seconds,
            },
        )
    return summary


# Which field of a row of each kind says where its generated part came from.
_SOURCE_FIELD = {
    DatasetKind.INSTRUCTION: "source",
    DatasetKind.PREFERENCE: "rejected_source",
    DatasetKind.GOLDEN: "source",
}


def _sources(kind: DatasetKind, splits: dict[str, list[dict]]) -> dict[str, int]:
    """Rows of every split by source (generator, template, query), for kinds that record one."""
    field = _SOURCE_FIELD.get(kind)
    if field is None:
        return {}
    counts = Counter(row[field] for rows in splits.values() for row in rows if row.get(field))
    return dict(sorted(counts.items()))


def _rebuilt(kind: DatasetKind, drops: Counter[str]) -> int:
    """Rows of ``kind`` whose generator output was unusable or never made, so templates made them."""
    return sum(
        count
        for key, count in drops.items()
        if key.startswith(f"{kind.value}:") and is_rebuilt(key.split(":", 1)[1])
    )


def _generate(
    corpus: Corpus,
    golden_documents: set[str],
    job: DatasetJob,
    settings: Settings,
    *,
    drops: Counter[str],
    on_progress: ProgressCallback | None,
) -> _Generated:
    # Read before the generator loads: a wrong path or line costs nothing.
    written = read_written_questions(Path(job.paraphrased_questions)) if job.paraphrased_questions else []
    generator = make_generator(job.generator, settings, batch_size=job.batch_size, threads=job.threads)
    # A rules backend is the templates themselves: its rows are counted as template rows.
    run = GenerationRun(
        None if generator.templated else generator,
        budget_seconds=job.budget,
        batch_size=job.batch_size,
        on_progress=on_progress,
    )
    try:
        passages = usable_passages(corpus, job, drops)
        # The golden questions first: every model is judged on them, so they get the generator's time.
        asked = sorted(passages, key=lambda passage: passage.chunk.document_id not in golden_documents)
        generated = generated_instructions(asked, run, job, drops, golden_documents=golden_documents)
        examples = passage_examples(passages, generated)
        # The template views take a moment: one event when they are made, with their rate.
        meter = run.meter("rows from templates", 0)
        views = template_views(passages, job)
        meter.total = len(views)
        meter.advance(made=len(views))
        examples += views
        examples += paraphrase_examples(
            passages,
            written,
            drops,
            max_overlap=job.max_paraphrase_overlap,
            golden_documents=golden_documents,
        )
        examples += self_instruct_examples(passages, run, job, drops)
        examples += query_instructions(corpus, job, settings, drops)
        pairs = build_preference_pairs(examples, run, job, drops) if job.preference else []
        return _Generated(examples, pairs, generator.ref, run.seconds_spent)
    finally:
        generator.close()


def _assemble_splits(
    corpus: Corpus,
    generated: _Generated,
    golden_documents: set[str],
    *,
    job: DatasetJob,
    settings: Settings,
    drops: Counter[str],
    on_progress: ProgressCallback | None,
) -> tuple[dict[DatasetKind, dict[str, list[dict]]], str, str | None]:
    """The rows of every kind by split (training rows decontaminated), the canary, the embedder ref."""
    examples, pairs = generated.examples, generated.pairs
    held_out = [e for e in examples if e.document_id in golden_documents]
    # One question per held-out chunk: the generator's when it passed the checks, else a template's;
    # then the questions people wrote about held-out chunks (datasets.paraphrase).
    golden_rows = [
        golden_row(
            e.instruction,
            e.answer,
            e.document_id,
            e.chunk_id,
            "instruction" if e.origin == PASSAGE else PARAPHRASE,
            source=e.source,
            paraphrased=is_paraphrased(e.instruction, e.answer, job.max_paraphrase_overlap),
        )
        for e in held_out
        if e.origin in (PASSAGE, PARAPHRASE)
    ]
    # Keyword probes of every held-out chunk make the golden set large enough to tell rankers
    # (and perplexities) apart; the reference is the chunk's text, as for its instruction.
    answers = {e.chunk_id: e.answer for e in held_out}
    golden_rows += [
        golden_row(probe, answers.get(chunk.id, chunk.content), chunk.document_id, chunk.id, "probe")
        for chunk in corpus.chunks
        if chunk.document_id in golden_documents
        for probe in probe_queries(chunk.content, job.retrieval_probes)
    ]
    canary = make_canary(rows_hash(DatasetKind.GOLDEN, {"test": golden_rows}))
    decontaminator = Decontaminator(
        [text for row in golden_rows for text in (row["instruction"], row["reference"])],
        job.decontamination_ngram,
    )

    def training(items, text_of, kind: str) -> list:
        candidates = [item for item in items if item.document_id not in golden_documents]
        return decontaminator.filter(candidates, text_of, job.decontamination_threshold, drops, kind)

    def testing(items) -> list[dict]:
        return [item.to_row() for item in items if item.document_id in golden_documents]

    train_examples = training(examples, lambda e: f"{e.instruction}\n{e.answer}", "instruction")
    splits: dict[DatasetKind, dict[str, list[dict]]] = {
        DatasetKind.GOLDEN: {"test": golden_rows},
        DatasetKind.INSTRUCTION: {"train": [e.to_row() for e in train_examples], "test": testing(examples)},
    }
    if job.preference:
        train_pairs = training(pairs, lambda p: f"{p.instruction}\n{p.chosen}\n{p.rejected}", "preference")
        splits[DatasetKind.PREFERENCE] = {"train": [p.to_row() for p in train_pairs], "test": testing(pairs)}
    reranker_ref = None
    if job.reranker:
        reranker_pairs, reranker_ref = _mine_reranker_pairs(
            corpus,
            examples,
            golden_documents,
            job=job,
            settings=settings,
            drops=drops,
            on_progress=on_progress,
        )
        train_reranker = training(
            reranker_pairs,
            lambda p: "\n".join((p.query, p.positive, *(text for _, text in p.candidates))),
            "reranker",
        )
        splits[DatasetKind.RERANKER] = {
            "train": [p.to_row() for p in train_reranker],
            "test": testing(reranker_pairs),
        }
    return splits, canary, reranker_ref


def _mine_reranker_pairs(
    corpus: Corpus,
    examples: list[InstructionExample],
    golden_documents: set[str],
    *,
    job: DatasetJob,
    settings: Settings,
    drops: Counter[str],
    on_progress: ProgressCallback | None,
) -> tuple[list[RerankerPair], str]:
    from twinops.datasets.reranker_pairs import mine_reranker_pairs, retrieval_queries
    from twinops.infra.qdrant import open_qdrant
    from twinops.models.loaders import embedder_identity, load_embedder

    embedder_id, embedder_version = embedder_identity(settings)
    author_id = Author(full_name=job.author).id if job.author else None
    queries = retrieval_queries(
        [
            (e.instruction, e.chunk_id, e.document_id, e.origin)
            for e in examples
            if e.origin in (PASSAGE, PARAPHRASE)
        ],
        [(chunk.id, chunk.document_id, chunk.content) for chunk in corpus.chunks],
        job.retrieval_probes,
    )
    with open_qdrant(settings) as client:
        pairs = mine_reranker_pairs(
            queries,
            {chunk.id: chunk.content for chunk in corpus.chunks},
            golden_documents,
            client,
            load_embedder(settings),
            author_id=author_id,
            candidates=job.reranker_candidates,
            hard_negatives=job.hard_negatives,
            drops=drops,
            on_progress=on_progress,
        )
    return pairs, f"embedder:{embedder_id}@{embedder_version}"
