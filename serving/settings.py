"""Settings section owned by the inference workers."""

from pydantic import BaseModel, Field, SecretStr


class ServeSettings(BaseModel):
    """HTTP serving, micro-batching, canary routing and hot-swap behaviour."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    top_k: int = Field(default=3, ge=1, le=50)
    max_batch: int = Field(default=64, ge=1, description="queries one request may carry")
    max_query_chars: int = Field(default=512, ge=1)
    reconcile_interval_s: float = Field(default=2.0, gt=0)
    abstain_threshold: float = Field(
        default=0.0, ge=0, le=1, description="default: abstain when the top probability is below this"
    )
    markets: list[str] = Field(
        default_factory=list,
        description="markets served besides the default one, each with its own champion/canary alias",
    )
    canary_share: float = Field(default=0.05, ge=0, le=1, description="share of sessions sent to a canary")
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
