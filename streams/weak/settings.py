"""The ``labels`` settings section: how the aggregation job turns behaviour into label distributions.

Composed by ``intentloop.settings`` as ``INTENTLOOP_LABELS__*``. It lives next to the code it
configures (``streams.weak``) rather than in ``streams.settings``, which holds the ingestion
worker's sections.
"""

from typing import Literal

from pydantic import BaseModel, Field


class LabelSettings(BaseModel):
    """Knobs of ``intentloop labels aggregate`` (and of the demo's aggregation step).

    Time is measured against the newest stored search, not the wall clock, so that a replayed
    backfill labels exactly as the same behaviour did live.
    """

    window_days: float | None = Field(
        default=90.0, gt=0, description="searches this far back from the newest one are read (None: all)"
    )
    half_life_days: float | None = Field(
        default=14.0,
        gt=0,
        description="a search's votes halve every this many days, counted back from the newest search "
        "of the window (None: no decay); posterior policy: decay shifts a query's split towards its "
        "recent behaviour, never its evidence",
    )
    policy: Literal["posterior", "threshold"] = Field(
        default="posterior",
        description="posterior: every query with positive evidence gets a Dirichlet posterior over "
        "labels (prior: the overall label mix), abstaining only without evidence or on contradictory "
        "evidence; threshold: the weighted majority vote with hard cuts (the earlier behaviour with "
        "MIN_EVIDENCE=2 and MAX_IPS_WEIGHT=10)",
    )
    prior_strength: float = Field(
        default=1.0,
        gt=0,
        description="posterior policy: weight of the label-mix prior, in actions (one click = 1, "
        "add-to-cart 2, purchase 3): one click moves a query half-way from the prior",
    )
    min_evidence: float = Field(
        default=0.0,
        ge=0,
        description="evidence a query needs, else it abstains (posterior: action strength, each "
        "action once; threshold: decayed positive vote weight, 2.0 there before)",
    )
    min_confidence: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="share of a query's own (debiased) evidence its top label needs, else it abstains "
        "as contradictory (one click each on two labels is; two against one is not); threshold policy: "
        "the top label's vote share, abstaining with reason min_confidence",
    )
    propensity_method: Literal["harvest", "pbm"] = Field(
        default="harvest",
        description="how examination propensity per rank is fitted from the clicks: harvest (intervention "
        "harvesting) or pbm (position-based click model, EM)",
    )
    max_ips_weight: float = Field(
        default=1.25,
        ge=1,
        description="inverse-propensity weights are clipped at this value (10 before): below "
        "MIN_CONFIDENCE/(1-MIN_CONFIDENCE), so one deep click against one top click stays "
        "contradictory; accuracy is flat over 1-10 on the long-tail simulator (docs/labeling.md)",
    )
    label_model_margin: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="accuracy on gold labels the label model must gain over majority vote to be used",
    )
    bucket_hours: float = Field(
        default=24.0,
        gt=0,
        description="incremental aggregation (the default of `labels aggregate`) keeps per-query "
        "statistics per time bucket of this many hours: a bucket whose searches or feedback changed "
        "is refolded whole, the bucket the window starts in is recomputed every run",
    )

    @property
    def bucket_s(self) -> float:
        return self.bucket_hours * 3600.0

    @property
    def window_s(self) -> float | None:
        return None if self.window_days is None else self.window_days * 86400.0

    @property
    def half_life_s(self) -> float | None:
        return None if self.half_life_days is None else self.half_life_days * 86400.0
