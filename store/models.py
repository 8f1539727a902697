"""The relational schema. Alembic migrations under ``store/migrations`` create exactly this."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from store.dimensions import CATEGORY

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, datetime: DateTime(timezone=True)}


class Product(Base):
    """Catalog entry; ``label`` is the category path cut to the taxonomy depth at load time."""

    __tablename__ = "catalog"
    product_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    category_path: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    # product | content | help (streams.events.ItemKind); rows loaded before it existed are products
    kind: Mapped[str] = mapped_column(String(16), default="product", server_default="product")

    __table_args__ = (CheckConstraint("kind IN ('product', 'content', 'help')", name="kind"),)


class SearchQuery(Base):
    """One search as answered; ``norm_text`` is the key weak labels aggregate under."""

    __tablename__ = "search_queries"
    query_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text)
    norm_text: Mapped[str] = mapped_column(Text, index=True)
    locale: Mapped[str] = mapped_column(String(16))
    shown: Mapped[list[str]] = mapped_column(ARRAY(Text))


class FeedbackEvent(Base):
    """One feedback event, stored once by ``event_id`` (the idempotency key of at-least-once delivery).

    ``status`` says what became of it: ``pending`` (its query has not arrived yet), ``voted``,
    ``no_vote`` (no labeling function fired, or the item votes for no category: a help page, a
    product outside a closed label set) or ``unknown_product`` (not in the catalog: counted and
    skipped).
    """

    __tablename__ = "feedback_events"
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    query_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(16))
    product_id: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(Integer)
    dwell_ms: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(Text)
    ingested_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_feedback_events_pending", "query_id", postgresql_where="status = 'pending'"),)


class WeakLabel(Base):
    """Accumulated labeling-function votes of one normalised query for one label."""

    __tablename__ = "weak_labels"
    norm_text: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str] = mapped_column(Text, primary_key=True)
    votes: Mapped[float] = mapped_column(Float)
    events: Mapped[int] = mapped_column(Integer)
    last_ts: Mapped[datetime]


class GoldLabel(Base):
    """A human-verified label with a declared purpose: ``eval`` (measured against, never trained
    on: its query is kept out of every training row) or ``train`` (a training row like weak labels,
    held out only when its query falls in the validation bucket)."""

    __tablename__ = "gold_labels"
    # store.dimensions: which label dimension (category, intent_type) the label is of
    dimension: Mapped[str] = mapped_column(String(32), primary_key=True, server_default=CATEGORY)
    norm_text: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(64), default="manual")
    purpose: Mapped[str] = mapped_column(String(8), default="eval", server_default="eval")

    __table_args__ = (CheckConstraint("purpose IN ('eval', 'train')", name="purpose"),)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # training weight of a train row: 1.0 for files; reviewed labels carry the reviewers' agreement
    # (store.review.resolve: two reviewers who disagree give half a row)
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")


class DeadLetter(Base):
    """A rejected input event, keyed by its Kafka coordinates so a redelivery is not counted twice."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_coords"),)


class TrainingRun(Base):
    """One training attempt, successful or not, with its data window, parameters and results."""

    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")
    trigger: Mapped[str] = mapped_column(String(32), default="manual")
    device: Mapped[str | None] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)


class AdapterVersion(Base):
    """A trained adapter, identified by the content hash of its artifact."""

    __tablename__ = "adapter_versions"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    base_model: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_uri: Mapped[str] = mapped_column(Text)
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))


class AliasEvent(Base):
    """Audit trail of alias moves (promotions, rollbacks): which version served when, and why."""

    __tablename__ = "alias_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(ForeignKey("adapter_versions.version"))
    previous: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(server_default=func.now())


class LabelDistribution(Base):
    """The aggregated weak label of one query in one dimension: what training reads (each
    aggregation rebuilds the rows of the dimensions it labels)."""

    __tablename__ = "label_distributions"
    dimension: Mapped[str] = mapped_column(String(32), primary_key=True, server_default=CATEGORY)
    norm_text: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    evidence: Mapped[float] = mapped_column(Float)
    distribution: Mapped[dict[str, Any]] = mapped_column()
    abstained: Mapped[bool]
    reason: Mapped[str] = mapped_column(Text, default="")
    method: Mapped[str] = mapped_column(String(32))
    searches: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    computed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LabelingReport(Base):
    """One aggregation's analysis of one dimension: per-function coverage/overlap/conflict/
    accuracy, propensities, majority vote vs label model on gold. Kept for the dashboard's history."""

    __tablename__ = "labeling_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dimension: Mapped[str] = mapped_column(String(32), server_default=CATEGORY)
    computed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    report: Mapped[dict[str, Any]] = mapped_column()


class GateRecord(Base):
    """One promotion-gate decision on a candidate adapter, blessed or not, with its reasons.

    Written whether or not the candidate is promoted: a rejected adapter keeps its artifact and
    version row, and this row says which metric or slice stopped it, against which champion.
    ``details`` holds the candidate's, the champion's and the baselines' evaluation reports.
    """

    __tablename__ = "gate_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decided_at: Mapped[datetime] = mapped_column(server_default=func.now())
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))
    candidate: Mapped[str] = mapped_column(ForeignKey("adapter_versions.version"), index=True)
    champion: Mapped[str | None] = mapped_column(String(64))
    blessed: Mapped[bool]
    reasons: Mapped[list[str]] = mapped_column(ARRAY(Text))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PredictionCount(Base):
    """How often one adapter version predicted one label in one time bucket (issue #6: drift of
    what the model answers). Inference workers add to it (``store.drift.record_prediction_counts``);
    the drift job sums buckets into its windows, so the bucket size need not match the window."""

    __tablename__ = "prediction_counts"
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    # store.dimensions: the head that answered (category, intent_type)
    dimension: Mapped[str] = mapped_column(String(32), primary_key=True, server_default=CATEGORY)
    label: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class DriftReference(Base):
    """A champion's training label distribution, frozen the first time the drift job sees it.

    Training runs record how many queries and labels their snapshot had, not each label's count,
    and the label tables they read are rebuilt later; so the counts are taken once, from the
    run's recorded snapshot source, and kept here for every later window to be compared with.
    """

    __tablename__ = "drift_references"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    source: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column()


class DriftReport(Base):
    """One window of one stream (weak labels or predictions) compared with one reference
    (the champion's training snapshot, or the previous window): statistics, flags and verdict."""

    __tablename__ = "drift_reports"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    computed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    stream: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    version: Mapped[str | None] = mapped_column(String(64))
    n: Mapped[int] = mapped_column(Integer)
    n_reference: Mapped[int] = mapped_column(Integer)
    js: Mapped[float | None] = mapped_column(Float)
    psi: Mapped[float | None] = mapped_column(Float)
    hellinger: Mapped[float | None] = mapped_column(Float)
    linf: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    alert: Mapped[bool]
    alerted_at: Mapped[datetime | None]
    new_labels: Mapped[list[str]] = mapped_column(ARRAY(Text))
    vanished_labels: Mapped[list[str]] = mapped_column(ARRAY(Text))
    reasons: Mapped[list[str]] = mapped_column(ARRAY(Text))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        UniqueConstraint("stream", "reference", "window_start", "window_end", name="uq_drift_reports_window"),
        Index("ix_drift_reports_window_end", "window_end"),
    )


class ExplanationWord(Base):
    """How much one word pushes queries toward one label, over the sampled recent traffic one
    adapter version explained (issue #15's global view). ``share`` is the spurious-cue signal: of
    the sampled queries holding the word, the share explained for this label (1.0: never seen
    with any other label)."""

    __tablename__ = "explanation_words"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    # store.dimensions: the head explained (category, intent_type)
    dimension: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(128), primary_key=True)
    word: Mapped[str] = mapped_column(String(128), primary_key=True)
    attribution: Mapped[float] = mapped_column(Float)  # traffic-weighted mean toward the label
    total: Mapped[float] = mapped_column(Float)  # sum over queries of attribution x searches
    queries: Mapped[int] = mapped_column(Integer)
    searches: Mapped[int] = mapped_column(Integer)
    share: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))
    computed_at: Mapped[datetime]


class ExplanationExample(Base):
    """One sampled query of a global view as explained: its label, probability and per-word
    attributions (``words``: ``[[word, attribution], ...]`` in query order)."""

    __tablename__ = "explanation_examples"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(32), primary_key=True)
    query: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str] = mapped_column(String(128))
    probability: Mapped[float] = mapped_column(Float)
    searches: Mapped[int] = mapped_column(Integer)
    words: Mapped[list[Any]] = mapped_column(JSONB)
    method: Mapped[str] = mapped_column(String(16))
    computed_at: Mapped[datetime]


class Reviewer(Base):
    """A person allowed to label on the review page. Only the token's SHA-256 is kept: a leaked
    table grants nothing, and a lost token is replaced, never recovered. Revoked reviewers keep
    their row so their past decisions still name them."""

    __tablename__ = "reviewers"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class ReviewItem(Base):
    """One query chosen for human review (issue #16), frozen as the reviewer will see it: the
    champion's probabilities, the weak label and its evidence, the explanation, and why it was
    chosen (``reasons``). A query is queued at most once per dimension."""

    __tablename__ = "review_queue"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    batch: Mapped[int] = mapped_column(Integer)
    selected_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # store.dimensions: which label dimension the reviewer labels
    dimension: Mapped[str] = mapped_column(String(32))
    norm_text: Mapped[str] = mapped_column(Text)
    strategy: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[dict[str, Any]] = mapped_column()
    version: Mapped[str | None] = mapped_column(String(64))  # the champion that scored it
    suggestion: Mapped[str | None] = mapped_column(Text)  # what Enter accepts
    probabilities: Mapped[list[Any]] = mapped_column(JSONB)  # [[label, p], ...] top first
    weak: Mapped[dict[str, Any] | None] = mapped_column()  # the weak label's distribution and why
    evidence: Mapped[list[Any]] = mapped_column(JSONB)  # [{type, product_id, title, label, n}, ...]
    explanation: Mapped[dict[str, Any] | None] = mapped_column()  # {method, label, words}
    searches: Mapped[int] = mapped_column(Integer)
    # how many reviewers should label it: 2 for the share that measures their agreement
    wanted: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")

    __table_args__ = (
        CheckConstraint("strategy IN ('active', 'random')", name="strategy"),
        UniqueConstraint("dimension", "norm_text", name="uq_review_queue_query"),
    )


class ReviewDecision(Base):
    """One reviewer's decision on one queued item (a keystroke on the review page): the audit
    trail the gold row is derived from. ``label`` is NULL for a skip; an undo sets ``undone_at``
    and keeps the row. A reviewer holds at most one active decision per item."""

    __tablename__ = "review_decisions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_queue.id"))
    dimension: Mapped[str] = mapped_column(String(32))
    norm_text: Mapped[str] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(ForeignKey("reviewers.name"))
    label: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(8))
    decided_at: Mapped[datetime] = mapped_column(server_default=func.now())
    seconds: Mapped[float] = mapped_column(Float)
    undone_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("action IN ('label', 'accept', 'skip')", name="action"),
        Index("ix_review_decisions_query", "dimension", "norm_text"),
        Index(
            "uq_review_decisions_active",
            "item_id",
            "reviewer",
            unique=True,
            postgresql_where="undone_at IS NULL",
        ),
    )


class LabelFoldState(Base):
    """Which time bucket of searches a shard of incremental aggregation has folded into
    ``label_stats``, and against what: ``fingerprint`` (the bucket's searches and feedback, counted
    and hashed) and ``config`` (settings, labeling functions and catalog). A bucket is refolded
    when either differs (streams.labels_incremental)."""

    __tablename__ = "label_fold_state"
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    n_shards: Mapped[int] = mapped_column(Integer, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    config: Mapped[str] = mapped_column(Text)
    folded_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LabelStat(Base):
    """One per-query sufficient statistic of one time bucket (streams.weak.incremental): summed
    over buckets, rescaled for decay and evaluated under the fitted propensity it gives exactly the
    vote table a full aggregation computes. ``qhash`` (md5 of the query) assigns it to a shard."""

    __tablename__ = "label_stats"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    bucket: Mapped[int] = mapped_column(BigInteger)
    qhash: Mapped[int] = mapped_column(BigInteger)
    dimension: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    norm_text: Mapped[str] = mapped_column(Text)
    lf: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    basis: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_label_stats_bucket", "bucket", "qhash"),)


class LabelFoldRecord(Base):
    """A search kept whole by incremental aggregation: its votes are not linear in the propensity
    (streams.weak.symbolic), so it is tabulated at the end with the fitted one. Rare."""

    __tablename__ = "label_fold_records"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    bucket: Mapped[int] = mapped_column(BigInteger)
    qhash: Mapped[int] = mapped_column(BigInteger)
    weight: Mapped[float] = mapped_column(Float)
    record: Mapped[dict[str, Any]] = mapped_column()

    __table_args__ = (Index("ix_label_fold_records_bucket", "bucket", "qhash"),)


# Incremental aggregation's lookups on search_queries, chosen for their cost on ingestion's write
# path (bench ingest, 1M events: btree indexes on session, time and feedback's query id cut ingest
# throughput by 28%, hash/BRIN ones by 13%; docs/decisions.md). A hash index keeps a 4-byte hash
# and never compares text under a collation: a search's session neighbours (few rows, sorted after
# the lookup). BRIN keeps one summary per range of table blocks, nearly free to maintain, and
# searches are appended in about time order: a time bucket's range read. feedback_events, seven
# rows a search, gets no index: the fold reads all its buckets' feedback in one hash join.
Index("ix_search_queries_session", SearchQuery.session_id, postgresql_using="hash")
Index("ix_search_queries_ts", SearchQuery.ts, postgresql_using="brin")
