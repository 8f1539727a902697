"""Settings section owned by the inference workers."""

from pydantic import BaseModel, Field, SecretStr


class ServeSettings(BaseModel):
    """HTTP serving, micro-batching, canary routing and hot-swap behaviour."""

    host: str = Field(default="127.0.0.1", description="interface the HTTP inference worker listens on")
    port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="HTTP inference worker port (`worker serve --port` overrides)",
    )
    top_k: int = Field(
        default=3, ge=1, le=50, description="labels returned per query when a request gives no top_k"
    )
    max_batch: int = Field(default=64, ge=1, description="queries one request may carry (413 above)")
    max_query_chars: int = Field(default=512, ge=1, description="characters per query (422 above)")
    reconcile_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="seconds between re-reads of a worker's aliases (champion and canary of each market; a "
        "promotion message wakes it sooner) and flushes of its served-prediction counts",
    )
    abstain_threshold: float = Field(
        default=0.0, ge=0, le=1, description="default: abstain when the top probability is below this"
    )
    markets: list[str] = Field(
        default_factory=list,
        description="markets served besides the default one, each with its own champion/canary alias",
    )
    canary_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="share of sessions sent to a canary (sticky: by a hash of "
        "session_id, else of the first query)",
    )
    batch_max_queries: int = Field(default=128, ge=1, description="queries per model call (micro-batch)")
    batch_wait_ms: float = Field(
        default=2.0, ge=0, description="how long an idle worker waits for more requests to batch"
    )
    keep_warm: int = Field(default=1, ge=0, description="earlier versions per alias kept loaded for rollback")
    refused_retry_s: float = Field(default=60.0, gt=0, description="when a refused version is tried again")
    admin_token: SecretStr | None = Field(default=None, description="bearer token of /admin/*; unset: off")
    torch_threads: int = Field(default=0, ge=0, description="intra-op threads of the model; 0: every core")
    omp_passive: bool = Field(
        default=True, description="OMP_WAIT_POLICY=PASSIVE in workers: idle model threads yield the CPU"
    )
