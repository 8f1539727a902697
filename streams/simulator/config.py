"""What the traffic simulator is asked to produce."""

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streams.simulator.purposes import IntentTypeMix
from streams.simulator.realism import ShopperRealism
from streams.simulator.vocabulary import LEAVES

NEW_SESSION_RATE = 0.3  # chance that a search starts a new session rather than continuing one
Probability = Annotated[float, Field(ge=0, le=1)]
# By the relevance of a clicked item to the shopper's intent: other category, same top-level, same leaf.
ByRelevance = tuple[Probability, Probability, Probability]


def _covers(prefix: str, path: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class DriftInjection(BaseModel):
    """A shift in what shoppers mean, part-way through the traffic (issue #6's proof of detection).

    From the search at ``at`` (a share of ``n_searches``) on, query texts of the ``surge`` category
    are ``surge_factor`` times as popular, and texts of the ``new`` category, which nobody
    searched before, are searched as often as their popularity says. Categories are path prefixes
    (``garden``, ``home/decor``), so the label at any taxonomy depth moves.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: float = Field(default=0.5, gt=0, lt=1, description="share of the searches before the onset")
    surge: str | None = Field(default="garden", description="category whose texts surge at the onset")
    surge_factor: float = Field(default=4.0, ge=1, description="popularity multiplier of the surge")
    new: str | None = Field(default="pets", description="category nobody searches before the onset")

    @field_validator("surge", "new")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and not any(_covers(value, leaf.path) for leaf in LEAVES):
            raise ValueError(f"no simulated category path starts with {value!r}")
        return value

    def onset_index(self, n_searches: int) -> int:
        """Index of the first search drawn from the drifted popularity."""
        return round(self.at * n_searches)

    def in_surge(self, path: str) -> bool:
        return self.surge is not None and _covers(self.surge, path)

    def in_new(self, path: str) -> bool:
        return self.new is not None and _covers(self.new, path)


class SimConfig(BaseModel):
    """Knobs of the synthetic shop. Same config (seed included) -> byte-identical events.

    The defaults are a busy shop's few minutes (50 searches/s over ~17,000 texts, head queries
    repeated many times, generous clicks and carts): what the labeling tests need to see labels
    converge. :meth:`long_tail` is the other profile, shaped like a real click log. Both have
    shoppers who type like people (``realism``: paraphrases, typos, questions, brands, other
    languages) and come to buy, browse, ask or get help (``intent_types``); :meth:`easy` is the old
    shop whose queries only recombine the catalogue's words.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    n_searches: int = Field(default=10_000, ge=0)
    n_products: int = Field(default=5_000, ge=len(LEAVES), le=999_999, description="at least one per leaf")
    start: datetime = Field(default=datetime(2025, 1, 6, 9, 0, tzinfo=UTC), description="first search (UTC)")
    searches_per_second: float = Field(
        default=50.0, gt=0, description="mean rate of a Poisson arrival process"
    )
    ambiguity_share: float = Field(
        default=0.05, ge=0, le=0.5, description="share of distinct texts ambiguous"
    )
    noise_rate: float = Field(default=0.05, ge=0, le=1, description="chance a search gets one random click")
    variant_rate: float = Field(default=0.10, ge=0, le=1, description="chance of a case/whitespace variant")
    zipf_exponent: float = Field(default=1.0, gt=0, description="popularity ~ 1/(rank + offset)**exponent")
    zipf_offset: float = Field(default=10.0, ge=1, description="flattens the head (Zipf-Mandelbrot)")
    shown_per_search: int = Field(default=10, ge=1, le=50)
    engine_precision: float = Field(default=0.7, ge=0, le=1, description="shown slots filled from the intent")
    impressions: bool = Field(default=True, description="emit impression events for the viewed positions")
    fold: int = Field(default=4, ge=0, description="positions always viewed (above the fold)")
    max_return_delay_s: float = Field(default=6 * 3600.0, ge=60)
    drift: DriftInjection | None = Field(default=None, description="None: stationary traffic")
    attractiveness: ByRelevance = Field(
        default=(0.03, 0.1, 0.45), description="click chance of an examined item, by relevance"
    )
    cart_rate: ByRelevance = Field(
        default=(0.003, 0.02, 0.15), description="add_to_cart chance after a click, by relevance"
    )
    purchase_rate: float = Field(default=0.4, ge=0, le=1, description="purchase chance after add_to_cart")
    tail_texts: bool = Field(
        default=False, description="also the long query texts: ~130,000 distinct texts instead of ~17,000"
    )
    session_gap_s: float | None = Field(
        default=None,
        gt=0,
        description="None: searches join one of 64 concurrent sessions at random; seconds: one session "
        "at a time, its searches this far apart on average, the gaps between sessions keeping the rate",
    )

    realism: ShopperRealism | None = Field(
        default_factory=ShopperRealism,
        description="how shoppers leave the catalogue's words; None: the easy shop, whose events for "
        "a seed are exactly those from before realism existed",
    )
    intent_types: IntentTypeMix | None = Field(
        default_factory=IntentTypeMix,
        description="what shoppers want to do (buy, browse, ask, help), and the guide and help pages "
        "the catalogue gains for it; None: every shopper is a buyer and the catalogue has only "
        "products (for a seed, exactly the events of the realistic shop from before intent types). "
        "Needs realism: it is None by default when realism is None. Design choice (issue 14)",
    )

    @model_validator(mode="before")
    @classmethod
    def _easy_shop_has_no_intent_types(cls, data: Any) -> Any:
        """``SimConfig(realism=None)`` stays the easy shop: no intent types unless asked for."""
        if isinstance(data, dict) and "realism" in data and data["realism"] is None:
            return {"intent_types": None} | data
        return data

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    @model_validator(mode="after")
    def _sessions_fit_the_rate(self) -> Self:
        if self.session_gap_s is not None and self.between_sessions_s <= 0:
            raise ValueError(
                f"session_gap_s={self.session_gap_s} leaves no time between sessions at "
                f"{self.searches_per_second} searches/s: lower one of them"
            )
        return self

    @model_validator(mode="after")
    def _intent_types_need_realism(self) -> Self:
        if self.intent_types is not None and self.realism is None:
            raise ValueError(
                "intent_types needs realism (its texts build on the realistic shoppers' phrasing): "
                "set realism or set intent_types=None"
            )
        return self

    @property
    def between_sessions_s(self) -> float:
        """Mean gap before a search that starts a session (``session_gap_s`` mode), chosen so that
        searches keep ``searches_per_second`` on average: ``p*between + (1-p)*within = 1/rate``."""
        within = (1.0 - NEW_SESSION_RATE) * (self.session_gap_s or 0.0)
        return (1.0 / self.searches_per_second - within) / NEW_SESSION_RATE

    @classmethod
    def easy(cls, **overrides: Any) -> "SimConfig":
        """The shop before realism: every query recombines the catalogue's own words (a TF-IDF model
        scores ~0.99 on it). Tests of the shop's mechanics pin this profile: for a seed its events
        are byte-identical to those from before ``realism`` existed (no intent types either)."""
        return cls.model_validate({"realism": None, "intent_types": None} | overrides)

    @classmethod
    def long_tail(
        cls, seed: int = 0, n_searches: int = 20_000, *, days: float = 70.0, **overrides: Any
    ) -> "SimConfig":
        """A shop's click log over ``days`` (default 10 weeks) rather than a busy few minutes.

        What real search logs look like, and this profile follows:

        - most distinct queries are searched once. Web logs: about two thirds of AltaVista's
          distinct queries occurred once (Silverstein et al., "Analysis of a very large web search
          engine query log", SIGIR Forum 1999; figures here and below quoted from memory); product
          search logs have the same long tail (eBay's, in Hasan et al., "Query suggestion for
          e-commerce sites", WSDM 2011). Here: ~130,000 texts under a flatter Zipf (exponent 0.9,
          not 1.0), so at 5,000-50,000 searches 86-74% of the distinct texts are searched once;
        - a clicked query is usually clicked once and bought from never: the click log issue #11's
          reviewer measured had 703 distinct queries, three quarters clicked once, over 81 days;
          shops convert a few percent of visits (REES46's public event log: carts ~2-4% and
          purchases ~1-2% of product views). Here a relevant examined item is clicked with chance
          0.2 (not 0.45), carted after a click 4% of the time (not 15%): ~0.7 clicks and ~0.01
          purchases per search;
        - sessions are a few searches tens of seconds apart (``session_gap_s``), minutes to hours
          apart from the next session; returns come up to two weeks after a purchase.

        ``overrides`` replace any field (``SimConfig.long_tail(n_searches=5_000, impressions=False)``).
        """
        if days <= 0:
            raise ValueError(f"days must be positive, got {days}")
        values: dict[str, Any] = {
            "seed": seed,
            "n_searches": n_searches,
            "searches_per_second": max(n_searches, 1) / (days * 86_400.0),
            "tail_texts": True,
            "zipf_exponent": 0.9,
            "attractiveness": (0.01, 0.04, 0.2),
            "cart_rate": (0.001, 0.005, 0.04),
            "session_gap_s": 40.0,
            "max_return_delay_s": 14 * 86_400.0,
        }
        return cls.model_validate(values | overrides)
