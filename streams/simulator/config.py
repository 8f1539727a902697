"""What the traffic simulator is asked to produce."""

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.simulator.vocabulary import LEAVES


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
    """Knobs of the synthetic shop. Same config (seed included) -> byte-identical events."""

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

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
