"""What simulated shoppers want to do when they search: buy, browse, ask or get help.

Category says *which part of the catalogue* a search is about; the intent type says *what the
shopper wanted to do* there (issue 14). Per search (``SimConfig.intent_types`` on) the simulator
draws one type from :class:`IntentTypeMix`; the type decides whether the text carries a cue ("best
...", "how to clean ...", "return ..."), which pages the engine shows (the leaf's guide, help pages)
and what the shopper does (buyers as before; browsers look long at several products; askers read
the guide; help seekers open a help page; none of those three carts). Sources and measured results
are in ``docs/simulator.md``; rates without a published figure are design choices and say so.
"""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

_SUM_TOLERANCE = 1e-6


class IntentTypeMix(BaseModel):
    """Shares of the four intent types and how each shows in text, results and behaviour
    (``SimConfig.intent_types``; None: every shopper is a buyer and the catalogue has no pages)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    buy: float = Field(
        default=0.70,
        ge=0,
        le=1,
        description="share of searches made to buy: typed, shown and acted on exactly as without "
        "intent types. Design choice (product search is mostly transactional; we know of no "
        "published split for shop search)",
    )
    browse: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="share of searches made to compare or look around: several products viewed at "
        "length, nothing carted. Design choice",
    )
    ask: float = Field(
        default=0.10,
        ge=0,
        le=1,
        description="share of searches asking something about a product (how to choose, size, care): "
        "the leaf's buying guide is shown and read. Design choice",
    )
    help: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="share of searches for customer service (returns, order status, warranty): a help "
        "page is shown and opened. Design choice",
    )
    browse_cue_rate: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="chance a browsing search's text says so ('best ...', '... reviews', 'compare "
        "...'); otherwise it is typed as a buyer would type it. Design choice: low, so the text cue "
        "stays imperfect",
    )
    ask_cue_rate: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="chance an asking search is phrased as a question about the product ('how to "
        "clean ...', 'what size ... should i get'); otherwise typed as a buyer would. Design choice",
    )
    help_cue_rate: float = Field(
        default=0.85,
        ge=0,
        le=1,
        description="chance a help search names the trouble ('return ...', '... not working', "
        "'where is my ... order'); otherwise only the product. Design choice",
    )
    guide_top_rate: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="chance the engine ranks the leaf's guide in the top 3 for an asking search (else "
        "lower on the page); help pages for a help search always rank in the top 3. Design choice",
    )
    stray_guide_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="chance a buying or browsing search is shown the leaf's guide too, at any rank, "
        "so that a guide click is not a perfect sign of asking. Design choice",
    )
    stray_guide_click_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="chance a buyer or browser shown the guide opens it. Design choice",
    )
    page_click_rate: float = Field(
        default=0.85,
        ge=0,
        le=1,
        description="chance an asker opens the guide, or a help seeker a help page (the rest click "
        "nothing there: behaviour evidence is missing, not wrong). Design choice",
    )
    ask_product_click_rate: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="chance an asker also clicks a product (never carts it). Design choice",
    )
    help_product_click_rate: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="chance a help seeker also clicks a product (never carts it). Design choice",
    )

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> Self:
        total = self.buy + self.browse + self.ask + self.help
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ValueError(f"the intent type shares (buy, browse, ask, help) sum to {total:.4f}, not 1")
        return self

    @property
    def cuts(self) -> tuple[float, float, float]:
        """Cumulative thresholds of buy, browse and ask (help takes the rest)."""
        return self.buy, self.buy + self.browse, self.buy + self.browse + self.ask
