"""The HTTP API of an inference worker (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``).

Every request body (``serving.schemas``) is validated before it reaches the model (4xx with a
message, never a 5xx for bad input); ``/v1/intent`` requests are micro-batched (``serving.batcher``)
and every response, and every prediction in it, names the adapter version that produced it.
``/admin/*`` moves aliases in the registry and needs ``Authorization: Bearer <token>``
(INTENTLOOP_SERVE__ADMIN_TOKEN).
"""

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from aiolimiter import AsyncLimiter
from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request as StarletteRequest

from serving.adapters import Adapter
from serving.batcher import MicroBatcher
from serving.exceptions import ExplainError, NotReadyError, ServingError, UnknownMarketError
from serving.explain.explainer import Explanation, explain
from serving.explain.methods import METHODS
from serving.explain.target import Target
from serving.explain.words import split_query
from serving.host import Answer, ModelHost, Prediction, Request, ScoreRequest
from serving.metrics import CONTENT_TYPE
from serving.schemas import (
    AliasBody,
    AliasMoveOut,
    DimensionPrediction,
    ExplainRequest,
    ExplainResponse,
    IntentRequest,
    IntentResponse,
    LabelScore,
    MemberEffectOut,
    MemberPrediction,
    PromoteBody,
    QueryPrediction,
    WordScore,
)
from serving.settings import ExplainSettings, ServeSettings
from store.db import Database
from store.dimensions import CATEGORY
from store.exceptions import IntentloopError, StoreUnavailableError, VersionNotFoundError
from store.registry import RedisRegistry
from store.taxonomy import normalise_query
from store.versions import (
    CANARY,
    CHAMPION,
    AliasMove,
    alias_name,
    graduate_canary,
    promote,
    retire_alias,
    rollback,
)
from trainer.fused_artifact import Scores

T = TypeVar("T")

# One queue for intent requests and an explanation's texts, which ride in the same forward passes.
Batcher = MicroBatcher[Request | ScoreRequest, Answer | Scores]

_PATHS = {"/v1/intent", "/v1/explain", "/healthz", "/readyz", "/metrics"}


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


@dataclass
class Admin:
    """What the admin endpoints need: the registry to move aliases in, and a hook to reconcile now."""

    db: Database
    registry: RedisRegistry
    token: str | None
    on_move: Callable[[], None] = lambda: None


class _MetricsMiddleware:
    """Counts every HTTP request by path and status and times it (pure ASGI: no per-request task)."""

    def __init__(self, app: Any, host: ModelHost) -> None:
        self.app, self.metrics = app, host.metrics

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def _send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            path = scope.get("path", "")
            label = path if path in _PATHS or (path.startswith("/admin/") and len(path) < 40) else "other"
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)


def create_api(
    host: ModelHost,
    settings: ServeSettings,
    *,
    worker_id: str,
    admin: Admin | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The worker's app: the intent route, the probes and the admin routes, timed by one middleware.

    ``on_shutdown`` runs in the lifespan's shutdown, after the last request: uvicorn re-raises
    SIGTERM once it has shut down, so code after ``uvicorn.run`` never runs.
    """
    api = FastAPI(
        title="intentloop inference worker",
        version="1",
        description="Intent labels for search queries from hot-swapped LoRA adapters.",
        lifespan=_lifespan(on_shutdown),
    )
    batcher: Batcher = MicroBatcher(
        host.run_group,  # type: ignore[arg-type]  # ServingError is an Exception
        size=lambda r: len(r.texts),
        max_queries=settings.batch_max_queries,
        max_wait_s=settings.batch_wait_ms / 1000,
    )
    api.state.batcher = batcher
    api.state.draining = False  # set by ``drain`` when the worker starts shutting down
    api.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]  # narrower exc
    # Route groups are added to the app itself, not through ``APIRouter``/``include_router``: this
    # FastAPI dispatches included routers through an extra matching layer that cost ~30-40 us of
    # CPU per request (measured: /healthz +20%, /v1/intent +5%), and /v1/intent is the hot path.
    _add_intent_route(api, host, settings, batcher)
    _add_explain_route(api, host, settings, batcher)
    _add_probes(api, host, worker_id)
    _add_admin_routes(api, admin)
    api.add_middleware(_MetricsMiddleware, host=host)
    return api


def drain(api: FastAPI) -> None:
    """Shutdown has begun: ``/readyz`` answers 503 from now on while every other route still serves.

    Load balancers that poll readiness stop sending new requests to a draining worker before its
    listener closes; requests already sent, and the ones still arriving meanwhile, are answered.
    """
    api.state.draining = True


def _lifespan(
    on_shutdown: Callable[[], None] | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            await asyncio.to_thread(on_shutdown)

    return lifespan


async def _invalid(request: StarletteRequest, exc: RequestValidationError) -> JSONResponse:
    """422 with where and what, without echoing the input: it may be huge, or not encodable
    (a lone surrogate in the body made FastAPI's default handler fail with a 500)."""
    detail = [
        {k: _printable(v) for k, v in err.items() if k in ("type", "loc", "msg")} for err in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


# --------------------------------------------------------------------------- /v1/intent


def _add_intent_route(api: FastAPI, host: ModelHost, settings: ServeSettings, batcher: "Batcher") -> None:
    @api.post(
        "/v1/intent",
        response_model=IntentResponse,
        # ``members`` is only set when asked for: a plain answer's JSON stays exactly what it was
        response_model_exclude_unset=True,
        responses={413: {"description": "too many queries"}, 503: {"description": "no adapter loaded"}},
    )
    async def intent(req: IntentRequest) -> IntentResponse:
        """Intent labels for one query or a batch, all from one adapter version."""
        texts = req.texts()
        request = _model_request(req, texts, host, settings)
        try:
            answer = await batcher.submit(request)
        except NotReadyError as exc:
            raise HTTPException(503, str(exc)) from exc
        except ServingError as exc:
            raise HTTPException(422, str(exc)) from exc
        assert isinstance(answer, Answer)  # an intent Request is answered with an Answer
        return _intent_response(req, texts, answer)


def _model_request(req: IntentRequest, texts: list[str], host: ModelHost, settings: ServeSettings) -> Request:
    """The host's request for ``req``, or the 413/422 that says what is wrong with it."""
    if len(texts) > settings.max_batch:
        raise HTTPException(413, f"batch of {len(texts)} queries exceeds the limit of {settings.max_batch}")
    too_long = [i for i, t in enumerate(texts) if len(t) > settings.max_query_chars]
    if too_long:
        raise HTTPException(422, f"queries {too_long[:5]} exceed {settings.max_query_chars} characters")
    norm = [normalise_query(t) for t in texts]
    if any(not t for t in norm):
        raise HTTPException(422, "queries must contain non-whitespace text")
    try:
        host.check_market(req.market)
    except UnknownMarketError as exc:
        raise HTTPException(422, str(exc)) from exc
    return Request(
        texts=norm,
        top_k=req.top_k or settings.top_k,
        abstain_below=settings.abstain_threshold if req.abstain_below is None else req.abstain_below,
        market=req.market,
        session=req.session_id,
        members=req.members,
        dimensions=None if req.dimensions is None else tuple(d for d in req.dimensions if d != CATEGORY),
    )


def _intent_response(req: IntentRequest, texts: list[str], answer: Answer) -> IntentResponse:
    """The answer under the caller's own query strings (the model saw them normalised)."""
    return IntentResponse(
        version=answer.version,
        alias=answer.alias,
        market=req.market,
        predictions=[_query_prediction(raw, p) for raw, p in zip(texts, answer.predictions, strict=True)],
    )


def _query_prediction(raw: str, p: Prediction) -> QueryPrediction:
    out = QueryPrediction(
        query=raw,
        intent=p.intent,
        abstained=p.intent is None,
        labels=_scores(p.labels),
        version=p.version,
    )
    if p.dimensions:
        out.dimensions = {
            d: DimensionPrediction(label=a.label, labels=_scores(a.labels)) for d, a in p.dimensions.items()
        }
    if p.members is not None:
        out.members = [
            MemberPrediction(
                name=m.name, kind=m.kind, weight=m.weight, voted=m.voted, labels=_scores(m.labels)
            )
            for m in p.members
        ]
    return out


def _scores(labels: list[tuple[str, float]]) -> list[LabelScore]:
    return [LabelScore(label=lab, probability=pr) for lab, pr in labels]


# --------------------------------------------------------------------------- /v1/explain


def _add_explain_route(api: FastAPI, host: ModelHost, settings: ServeSettings, batcher: "Batcher") -> None:
    """``/v1/explain``: at most ``explain.concurrency`` at once (429 beyond), each on a thread of its
    own whose model calls queue on the batcher's model thread between intent micro-batches."""
    cfg = settings.explain
    pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="explain")
    busy = [0]  # explanations running; read and written on the event loop only
    # What every explanation on this worker may score, together, per second: beyond it they wait,
    # so explanation traffic takes a bounded share of the model whatever arrives.
    budget = AsyncLimiter(cfg.texts_per_s, 1.0)
    metrics = host.metrics

    @api.post(
        "/v1/explain",
        response_model=ExplainResponse,
        response_model_exclude_none=True,
        responses={
            422: {"description": "bad query, label, method or dimension"},
            429: {"description": "every explanation slot of this worker is busy"},
            503: {"description": "no adapter loaded"},
        },
    )
    async def explain_route(req: ExplainRequest) -> ExplainResponse:
        """Which words of the query pushed the serving version toward a label, and by how much."""
        method = req.method or cfg.method
        query = split_query(req.query)
        problem = _explain_problem(req, method, len(query.words), host, settings)
        if problem is not None:
            metrics.explanations.labels("invalid").inc()
            raise HTTPException(422, problem)
        if busy[0] >= cfg.concurrency:
            metrics.explanations.labels("busy").inc()
            raise HTTPException(
                429, f"{busy[0]} explanations are running on this worker; retry shortly", {"Retry-After": "1"}
            )
        busy[0] += 1
        metrics.explain_running.set(busy[0])
        try:
            request = Request(texts=[query.text], market=req.market, session=req.session_id)
            alias, adapter = host.resolve(request)
            loop = asyncio.get_running_loop()
            target = Target(
                host.base,
                adapter,
                dimension=req.dimension,
                run=functools.partial(_on_model_thread, batcher, loop, budget, cfg),
                scorer=functools.partial(_ride_along, batcher, loop, budget, cfg),
                chunk=cfg.chunk,
            )
            done = await loop.run_in_executor(
                pool,
                lambda: explain(
                    query, target, method=method, label=req.label, budget=cfg.budget, top_k=req.top_k
                ),
            )
        except NotReadyError as exc:
            raise HTTPException(503, str(exc)) from exc
        except (ExplainError, UnknownMarketError) as exc:
            metrics.explanations.labels("invalid").inc()
            raise HTTPException(422, str(exc)) from exc
        finally:
            busy[0] -= 1
            metrics.explain_running.set(busy[0])
        metrics.explanations.labels("ok").inc()
        metrics.explain_seconds.labels(method).observe(done.elapsed_ms / 1000)
        return _explain_response(done, alias, req.market)


def _ride_along(
    batcher: Batcher,
    loop: asyncio.AbstractEventLoop,
    budget: AsyncLimiter,
    cfg: ExplainSettings,
    adapter: Adapter,
    texts: list[str],
) -> Scores:
    """Score an explanation's texts (from its thread) in the next micro-batch, once the worker's
    explanation budget allows them. They join whatever intent requests are waiting: a few more rows
    in a forward pass that runs anyway cost less than a pass of their own (waiting for an idle
    moment made them run alone, and measured worse for the intent p99)."""

    async def submit() -> Answer | Scores:
        await budget.acquire(len(texts))
        return await batcher.submit(ScoreRequest(adapter, texts))

    result = asyncio.run_coroutine_threadsafe(submit(), loop).result()
    assert isinstance(result, Scores)
    return result


def _on_model_thread(
    batcher: Batcher,
    loop: asyncio.AbstractEventLoop,
    budget: AsyncLimiter,
    cfg: ExplainSettings,
    fn: Callable[[], T],
) -> T:
    """Run an explanation's own model work (integrated gradients: as many texts as steps) on the
    model thread, within the budget, as a low-priority call between micro-batches."""
    asyncio.run_coroutine_threadsafe(budget.acquire(min(cfg.ig_steps, cfg.texts_per_s)), loop).result()
    return batcher.call(fn, defer_s=cfg.defer_ms / 1000)


def _explain_problem(
    req: ExplainRequest, method: str, words: int, host: ModelHost, settings: ServeSettings
) -> str | None:
    """Why ``req`` cannot be explained (a 422's message), or None."""
    if method not in METHODS:
        return f"unknown method {method!r}; choose one of {list(METHODS)}"
    if len(req.query) > settings.max_query_chars:
        return f"query exceeds {settings.max_query_chars} characters"
    if words == 0:
        return "the query must contain non-whitespace text"
    if words > settings.explain.max_words:
        return f"query has {words} words; explanations take at most {settings.explain.max_words}"
    try:
        host.check_market(req.market)
    except UnknownMarketError as exc:
        return str(exc)
    return None


def _explain_response(e: Explanation, alias: str, market: str | None) -> ExplainResponse:
    return ExplainResponse(
        query=e.query,
        version=e.version,
        alias=alias,
        market=market,
        dimension=e.dimension,
        label=e.label,
        probability=e.probability,
        empty_probability=e.empty_probability,
        method=e.method,
        words=[WordScore(word=w.word, start=w.start, end=w.end, attribution=w.attribution) for w in e.words],
        labels=_scores(e.top_labels),
        members=None if e.members is None else [MemberEffectOut(**dataclasses.asdict(m)) for m in e.members],
        model_calls=e.model_calls,
        elapsed_ms=e.elapsed_ms,
    )


# --------------------------------------------------------------------------- probes


def _add_probes(api: FastAPI, host: ModelHost, worker_id: str) -> None:
    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Alive (answers even before an adapter is loaded)."""
        return {"status": "ok", "worker": worker_id}

    @api.get("/readyz", responses={503: {"description": "no adapter loaded yet, or shutting down"}})
    async def readyz() -> dict[str, Any]:
        """Ready once the default market's champion adapter is loaded, until shutdown begins
        (``drain``); names every served version."""
        if api.state.draining:
            raise HTTPException(503, "shutting down")
        info = host.describe()
        if info["version"] is None:
            raise HTTPException(503, "no adapter loaded yet")
        return {"status": "ready", "worker": worker_id, **info}

    @api.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus exposition: requests, latency, batch sizes, swaps, refusals, served versions."""
        return Response(host.metrics.exposition(), media_type=CONTENT_TYPE)


# --------------------------------------------------------------------------- /admin

_ACTOR = "admin-api"  # who moved an alias, as the registry's audit trail records it
_BEARER = HTTPBearer(auto_error=False, description="INTENTLOOP_SERVE__ADMIN_TOKEN")


def _authoriser(admin: Admin | None) -> Callable[..., Admin]:
    """The dependency that lets a request through to ``admin`` only with its bearer token."""

    def authorised(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> Admin:
        if creds is None:
            raise HTTPException(
                401, "admin endpoints need 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
            )
        if admin is None or admin.token is None:
            raise HTTPException(403, "admin endpoints are disabled: set INTENTLOOP_SERVE__ADMIN_TOKEN")
        if not hmac.compare_digest(creds.credentials.encode("utf-8", "replace"), admin.token.encode()):
            raise HTTPException(403, "wrong admin token")
        return admin

    return authorised


async def _move(adm: Admin, fn: Callable[[], AliasMove]) -> AliasMoveOut:
    """Run an alias move off the event loop; store errors become 404 / 503 / 409."""
    try:
        move = await run_in_threadpool(fn)
    except VersionNotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
    except StoreUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    except IntentloopError as exc:
        raise HTTPException(409, str(exc)) from exc
    adm.on_move()
    return AliasMoveOut(alias=move.alias, version=move.version, previous=move.previous)


def _add_admin_routes(api: FastAPI, admin: Admin | None) -> None:
    Authorised = Annotated[Admin, Depends(_authoriser(admin))]

    @api.post("/admin/champion/promote", response_model=AliasMoveOut, tags=["admin"])
    async def champion_promote(body: PromoteBody, adm: Authorised) -> AliasMoveOut:
        """Make ``version`` the champion of ``market`` (default market when omitted)."""
        alias = alias_name(CHAMPION, body.market)
        return await _move(
            adm,
            lambda: promote(
                adm.db, adm.registry, body.version, actor=_ACTOR, reason=body.reason, alias=alias
            ),
        )

    @api.post("/admin/champion/rollback", response_model=AliasMoveOut, tags=["admin"])
    async def champion_rollback(body: AliasBody, adm: Authorised) -> AliasMoveOut:
        """Point the champion back at the version before its latest move."""
        alias = alias_name(CHAMPION, body.market)
        return await _move(
            adm, lambda: rollback(adm.db, adm.registry, actor=_ACTOR, reason=body.reason, alias=alias)
        )

    @api.post("/admin/canary/start", response_model=AliasMoveOut, tags=["admin"])
    async def canary_start(body: PromoteBody, adm: Authorised) -> AliasMoveOut:
        """Send the configured share of sessions to ``version`` (the canary alias)."""
        alias = alias_name(CANARY, body.market)
        return await _move(
            adm,
            lambda: promote(
                adm.db, adm.registry, body.version, actor=_ACTOR, reason=body.reason, alias=alias
            ),
        )

    @api.post("/admin/canary/promote", response_model=AliasMoveOut, tags=["admin"])
    async def canary_promote(body: AliasBody, adm: Authorised) -> AliasMoveOut:
        """The canary's version becomes the champion; the canary is retired."""
        return await _move(
            adm,
            lambda: graduate_canary(
                adm.db, adm.registry, actor=_ACTOR, reason=body.reason, market=body.market
            ),
        )

    @api.post("/admin/canary/rollback", response_model=AliasMoveOut, tags=["admin"])
    async def canary_rollback(body: AliasBody, adm: Authorised) -> AliasMoveOut:
        """Retire the canary: all its traffic returns to the champion."""
        alias = alias_name(CANARY, body.market)
        return await _move(
            adm, lambda: retire_alias(adm.db, adm.registry, alias, actor=_ACTOR, reason=body.reason)
        )
