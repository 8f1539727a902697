"""The HTTP API of an inference worker (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``)."""

from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator

from serving.exceptions import NotReadyError
from serving.host import ModelHost
from serving.settings import ServeSettings
from store.taxonomy import normalise_query


class IntentRequest(BaseModel):
    """One query or a batch; exactly one of ``query`` / ``queries``."""

    query: str | None = Field(default=None, min_length=1)
    queries: list[str] | None = Field(default=None, min_length=1)
    top_k: int | None = Field(default=None, ge=1, le=50)

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


class QueryPrediction(BaseModel):
    query: str
    labels: list[LabelScore]


class IntentResponse(BaseModel):
    version: str = Field(description="the adapter version that produced every prediction here")
    predictions: list[QueryPrediction]


def create_api(host: ModelHost, settings: ServeSettings, *, worker_id: str) -> FastAPI:
    api = FastAPI(title="intentloop inference worker", version="1")

    @api.post("/v1/intent", response_model=IntentResponse)
    async def intent(req: IntentRequest) -> IntentResponse:
        texts = req.texts()
        if len(texts) > settings.max_batch:
            raise HTTPException(
                413, f"batch of {len(texts)} queries exceeds the limit of {settings.max_batch}"
            )
        too_long = [i for i, t in enumerate(texts) if len(t) > settings.max_query_chars]
        if too_long:
            raise HTTPException(422, f"queries {too_long[:5]} exceed {settings.max_query_chars} characters")
        norm = [normalise_query(t) for t in texts]
        if any(not t for t in norm):
            raise HTTPException(422, "queries must contain non-whitespace text")
        try:
            version, preds = await run_in_threadpool(host.predict, norm, req.top_k or settings.top_k)
        except NotReadyError as exc:
            raise HTTPException(503, str(exc)) from exc
        return IntentResponse(
            version=version,
            predictions=[
                QueryPrediction(
                    query=raw, labels=[LabelScore(label=lab, probability=p) for lab, p in pr.labels]
                )
                for raw, pr in zip(texts, preds, strict=True)
            ],
        )

    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "worker": worker_id}

    @api.get("/readyz")
    async def readyz() -> dict[str, Any]:
        info = host.describe()
        if info["version"] is None:
            raise HTTPException(503, "no adapter loaded yet")
        return {"status": "ready", "worker": worker_id, **info}

    return api
