"""What the traffic simulator is asked to produce."""

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.simulator.vocabulary import LEAVES


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

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
