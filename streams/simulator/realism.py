"""How much the simulated shoppers type like people rather than like the catalogue.

Every rate is a per-search probability. The shapes (question, brand only, model number, attribute
first, other language) are exclusive: one draw picks at most one of them, so their rates must sum to
at most 1. Paraphrase and typo are drawn independently and compose with a shape ("what sneakers
should i buy" is a question and a paraphrase; "snaekers" a paraphrase and a typo). Sources and the
measured result are in ``docs/simulator.md``; rates without a published figure are design choices
and their descriptions say so.
"""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ShopperRealism(BaseModel):
    """Rates at which shoppers leave the catalogue's words (``SimConfig.realism``; None: the easy shop)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    paraphrase_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="chance that a search naming the product uses a colloquial or regional name "
        "('sneakers', 'phone cover') instead of the catalogue's; brand-only and other-language "
        "searches name none, so the tag's share is this times (1 - brand_only - other_language). "
        "Design choice",
    )
    held_out_share: float = Field(
        default=0.3,
        ge=0,
        lt=1,
        description="share of each leaf's alternative names held out of training: chosen by a stable "
        "hash of (leaf, phrase), at least one per leaf when positive; texts using one are tagged "
        "'unseen_phrasing'",
    )
    typo_rate: float = Field(
        default=0.10,
        ge=0,
        le=1,
        description="chance a search is misspelt (adjacent key, dropped / doubled / swapped letter, "
        "split or joined words, a brand's common misspelling): about 10-15% of web queries are "
        "misspelt (Cucerzan & Brill, EMNLP 2004, quoted from memory)",
    )
    question_rate: float = Field(
        default=0.04,
        ge=0,
        le=1,
        description="chance of a question or long natural-language query ('what sneakers should i buy'); "
        "long queries (5+ words) are ~10% of a web log and questions a part of them (Bendersky & "
        "Croft, WSCD 2009, from memory): a design choice below that",
    )
    brand_only_rate: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="chance the shopper types only a brand ('sony'): ambiguous across the brand's "
        "leaves, truth by the majority of what its searchers meant. Design choice",
    )
    model_number_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="chance of a model number or unit with the product ('pixel 8 phone case', "
        "'27in computer monitor'). Design choice",
    )
    attribute_first_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="chance the attribute comes first ('men running shoes', '16gb ram laptop'). "
        "Design choice",
    )
    other_language_rate: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="chance of a query in Spanish, German, French or Chinese ('zapatillas para correr', "
        "'跑步鞋'): exercises the non-English tokenizer path. Design choice",
    )
    hard_query_precision: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="factor on SimConfig.engine_precision for searches the lexical engine matches "
        "badly (typo, paraphrase, question, brand only, other language): fewer relevant products "
        "shown, so behaviour evidence is thinner exactly where the text is hard",
    )

    @model_validator(mode="after")
    def _shapes_fit(self) -> Self:
        if self.shape_total > 1:
            raise ValueError(
                f"the shape rates (question, brand_only, model_number, attribute_first, "
                f"other_language) sum to {self.shape_total:.3f} > 1: lower some of them"
            )
        return self

    @property
    def shape_total(self) -> float:
        """Share of searches that take one of the exclusive shapes."""
        return (
            self.question_rate
            + self.brand_only_rate
            + self.model_number_rate
            + self.attribute_first_rate
            + self.other_language_rate
        )

    @property
    def shape_cuts(self) -> tuple[float, float, float, float, float]:
        """Cumulative thresholds of question, brand only, model number, attribute first, other language."""
        q = self.question_rate
        b = q + self.brand_only_rate
        m = b + self.model_number_rate
        a = m + self.attribute_first_rate
        return q, b, m, a, a + self.other_language_rate
