"""Settings section of the review queue (``INTENTLOOP_REVIEW__*``): selection, gold and the page."""

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from store.dimensions import CATEGORY, DIMENSIONS


class ReviewWeights(BaseModel):
    """What each selection signal adds to a query's score before the traffic factor
    (``INTENTLOOP_REVIEW__WEIGHTS__UNCERTAINTY`` ...)."""

    uncertainty: float = Field(
        default=1.0, ge=0, description="weight of the champion's uncertainty (margin or entropy, 0..1)"
    )
    disagreement: float = Field(
        default=1.0,
        ge=0,
        description="weight of the Jensen-Shannon divergence between the weak-label distribution and the "
        "champion's (0..1)",
    )
    abstained: float = Field(
        default=0.5,
        ge=0,
        description="bonus of a query the labeler abstained on although it is searched at least "
        "busy_min_searches times",
    )
    drift: float = Field(
        default=0.5,
        ge=0,
        description="bonus of a query whose model or weak label drift surfaced in the last "
        "drift_lookback_days (a new label, or one of the largest moves)",
    )


class ReviewSettings(BaseModel):
    """The review queue (``intentloop review``, the dashboard's review page): what is worth a
    person's time, what their labels weigh, and how reviewers sign in."""

    dimension: str = Field(
        default=CATEGORY, description="label dimension `intentloop review select` queues by default"
    )
    purpose: Literal["train", "eval"] = Field(
        default="train",
        description="purpose of the gold labels reviews write: train (the hash split still sends about "
        "a fifth to validation, where the gate and early stopping read them) or eval (held out only)",
    )
    gold_weight: float = Field(
        default=1.0,
        gt=0,
        description="training weight of a reviewed label (times the share of reviewers who agree on it)",
    )
    uncertainty: Literal["margin", "entropy"] = Field(
        default="margin",
        description="how the champion's uncertainty is measured: 1 - (p1 - p2), or entropy / log K",
    )
    weights: ReviewWeights = Field(default_factory=ReviewWeights)
    busy_min_searches: int = Field(
        default=3, ge=1, description="searches from which an abstained query earns the abstained bonus"
    )
    max_similarity: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="cosine similarity of the champion's encodings from which a query counts as a "
        "near-duplicate of one already chosen in the batch, and is left out (near-duplicates fill the "
        "budget only when the pool runs out of other queries)",
    )
    random_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="share of an active batch drawn at random (strategy random): an unbiased slice, "
        "since actively chosen queries are the hard ones and would bias gold-based floors",
    )
    overlap: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of each batch that two reviewers are asked to label, for the agreement "
        "figures (Cohen's kappa)",
    )
    pool_max: int = Field(
        default=20000,
        ge=1,
        description="most searched unreviewed queries a selection scores (about 35 s per 20,000 on "
        "two CPU cores)",
    )
    drift_lookback_days: float = Field(
        default=7.0, gt=0, description="days of drift alerts whose labels earn the drift bonus"
    )
    explain: bool = Field(
        default=True,
        description="store an occlusion explanation of the suggested label with each queued query, "
        "for the review page's highlighted words",
    )
    secret: SecretStr | None = Field(
        default=None,
        repr=False,  # masked anyway; kept out of printed settings altogether
        description="key that signs review sessions and CSRF tokens; unset: a random key per process "
        "(sessions end when the dashboard restarts; set it when several replicas serve the page)",
    )
    max_seconds: float = Field(
        default=600.0,
        gt=0,
        description="seconds spent on one decision are recorded up to this (a reviewer who left the "
        "page open does not count as slow)",
    )

    @field_validator("dimension")
    @classmethod
    def _known_dimension(cls, value: str) -> str:
        if value not in DIMENSIONS:
            raise ValueError(f"unknown label dimension {value!r}: known are {list(DIMENSIONS)}")
        return value
