"""The inference API's request and response bodies (their JSON Schemas are the OpenAPI document's).

Kept apart from the routes (``serving.api``) so the contract a client codes against reads on one
page; every field has limits, so bad input is a 4xx before it reaches the model.
"""

from pydantic import BaseModel, ConfigDict, Field, model_validator

MARKET_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"


class IntentRequest(BaseModel):
    """One query or a batch; exactly one of ``query`` / ``queries``."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(default=None, min_length=1, description="one search query")
    queries: list[str] | None = Field(default=None, min_length=1, description="a batch of queries")
    top_k: int | None = Field(default=None, ge=1, le=50, description="labels per query (default: settings)")
    abstain_below: float | None = Field(
        default=None, ge=0, le=1, description="no intent when the top probability is below this"
    )
    market: str | None = Field(default=None, pattern=MARKET_PATTERN, description="adapter set to use")
    session_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="sticky canary assignment key"
    )
    members: bool = Field(
        default=False,
        description="also return, per query, each fusion member's top labels and weight "
        "(fused versions only; a plain version's predictions never carry members)",
    )
    dimensions: list[str] | None = Field(
        default=None,
        max_length=8,
        description="label dimensions to answer besides the category (e.g. ['intent_type']); "
        "default: every one the version was trained for; [] the category alone; a dimension the "
        "version lacks is a 422",
    )

    @model_validator(mode="after")
    def _one_of(self) -> "IntentRequest":
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of 'query' (a string) or 'queries' (a list of strings)")
        return self

    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


class LabelScore(BaseModel):
    label: str
    probability: float


class MemberPrediction(BaseModel):
    """One member of a fused version: what it said about the query and how much the fusion trusts it."""

    name: str = Field(description="the member's name in the fusion, e.g. lora, tfidf, memory")
    kind: str = Field(
        description="adapter (encoder + adapter), lexical (TF-IDF + logistic regression) or "
        "memory (what shoppers' clicks, carts and purchases said about this query)"
    )
    weight: float = Field(
        description="the member's fusion weight, the same for every query of this version: its "
        "pooling weight (log-linear fusion) or its share of the coefficients (stacking)"
    )
    voted: bool = Field(
        description="false when the fusion ignored this member for this query: the memory on a "
        "query it has too little evidence for (its labels are then its prior)"
    )
    labels: list[LabelScore] = Field(description="the member's own top labels (top_k)")


class DimensionPrediction(BaseModel):
    """The query's answer in one more label dimension, from the same model call."""

    label: str | None = Field(description="the top label, or null when the model abstained")
    labels: list[LabelScore] = Field(description="the dimension's top labels (top_k)")


class QueryPrediction(BaseModel):
    query: str
    intent: str | None = Field(description="the top label, or null when the model abstained")
    abstained: bool
    labels: list[LabelScore]
    version: str = Field(description="the adapter version that produced this prediction")
    members: list[MemberPrediction] | None = Field(
        default=None,
        description="every member of a fused version, when the request asked for members: true "
        "(absent otherwise, and always for a plain version); labels above are the fused answer",
    )
    dimensions: dict[str, DimensionPrediction] | None = Field(
        default=None,
        description="the other label dimensions (intent_type: buy, browse, ask, help), when the "
        "version has them; intent and labels above are the category",
    )


class IntentResponse(BaseModel):
    version: str = Field(description="the adapter version that produced every prediction here")
    alias: str = Field(description="the alias that routed here: champion or canary (.market)")
    market: str | None
    predictions: list[QueryPrediction]


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    reason: str = Field(default="admin endpoint", max_length=500)
    market: str | None = Field(default=None, pattern=MARKET_PATTERN)


class AliasBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="admin endpoint", max_length=500)
    market: str | None = Field(default=None, pattern=MARKET_PATTERN)


class AliasMoveOut(BaseModel):
    alias: str
    version: str
    previous: str | None


class ExplainRequest(BaseModel):
    """One query to explain, routed as ``/v1/intent`` would route it (market, canary session)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="the search query, as the shopper typed it")
    label: str | None = Field(
        default=None, min_length=1, max_length=128, description="label to explain (default: the top one)"
    )
    dimension: str = Field(
        default="category", min_length=1, max_length=32, description="label dimension (e.g. intent_type)"
    )
    method: str | None = Field(
        default=None,
        description="shap, ig, lime or occlusion (default: INTENTLOOP_SERVE__EXPLAIN__METHOD)",
    )
    market: str | None = Field(default=None, pattern=MARKET_PATTERN, description="adapter set to use")
    session_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="sticky canary assignment key"
    )
    top_k: int = Field(default=3, ge=1, le=50, description="top labels returned beside the explanation")


class WordScore(BaseModel):
    word: str = Field(description="a word of the query as typed (Chinese: a segmented word)")
    start: int = Field(description="offset of the word in the query (characters)")
    end: int
    attribution: float = Field(
        description="how much the word pushed the label's probability (negative: away from it)"
    )


class MemberEffectOut(BaseModel):
    name: str
    kind: str = Field(description="adapter, lexical or memory")
    weight: float = Field(description="the member's fusion weight in this version")
    probability: float = Field(description="the member's own probability of the label")
    moved: float = Field(
        description="fused probability of the label minus the fused probability with this member "
        "answering uniformly (the memory: abstaining)"
    )


class ExplainResponse(BaseModel):
    query: str
    version: str = Field(description="the adapter version explained: the one /v1/intent would use")
    alias: str = Field(description="the alias that routed here: champion or canary (.market)")
    market: str | None
    dimension: str
    label: str = Field(description="the label explained")
    probability: float = Field(description="the label's probability for the whole query")
    empty_probability: float = Field(description="the label's probability for the empty query")
    method: str
    words: list[WordScore]
    labels: list[LabelScore] = Field(description="the dimension's top labels for the query")
    members: list[MemberEffectOut] | None = Field(
        default=None,
        description="a fused version's members and how much each moved the decision (category only; "
        "absent for ig, which explains the encoder member)",
    )
    model_calls: int = Field(description="texts the explanation scored (integration steps for ig)")
    elapsed_ms: float
