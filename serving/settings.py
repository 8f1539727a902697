"""Settings section owned by the inference workers."""

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

ExplainMethod = Literal["shap", "ig", "lime", "occlusion"]


class ExplainSettings(BaseModel):
    """Explanations (``POST /v1/explain``, ``intentloop explain``): the method and what one may cost."""

    method: ExplainMethod = Field(
        default="occlusion",
        description="default attribution method: occlusion (leave one word out), shap (partition "
        "explainer, Owen values), ig (integrated gradients on the embeddings) or lime; occlusion "
        "measured most faithful per millisecond in `intentloop bench explain` (docs/explanations.md)",
    )
    budget: int = Field(
        default=64,
        ge=4,
        le=2048,
        description="model evaluations shap and lime may spend per explanation; integration steps "
        "of ig are a quarter of it",
    )
    texts_per_s: float = Field(
        default=12.0,
        gt=0,
        description="texts all explanations of one worker may score per second together, a leaky "
        "bucket: a burst that size is immediate, sustained explanation traffic waits (about two "
        "occlusion explanations of five words a second). Every text costs what a query costs: at "
        "half load on this 2-core CPU, 40/s raised the intent p99 by a third, 10/s by under a tenth",
    )
    max_words: int = Field(default=16, ge=1, le=128, description="words a query may have (422 above)")
    concurrency: int = Field(
        default=1,
        ge=1,
        description="explanations one worker computes at once; another request then gets a 429",
    )
    chunk: int = Field(
        default=8,
        ge=1,
        description="texts an explanation adds to one micro-batch (its texts ride in the intent "
        "batches' forward passes): bounds what it adds to any one of them; at most texts_per_s",
    )
    defer_ms: float = Field(
        default=200.0,
        ge=0,
        description="how long the gradient method's own forward and backward pass waits for no "
        "intent request to be waiting before it runs on the model thread anyway (low priority)",
    )
    sample: int = Field(default=300, ge=10, description="distinct recent queries the per-label view explains")
    refresh_on_promote: bool = Field(
        default=True,
        description="recompute the dashboard's per-label view when the training job promotes a "
        "version (`intentloop explain` recomputes it on demand)",
    )
    sample_days: float = Field(
        default=7.0,
        gt=0,
        description="days of traffic the per-label view samples, counted back from the newest "
        "stored search (a replayed log is explained as live traffic would have been)",
    )

    @property
    def ig_steps(self) -> int:
        """Integration steps of ``ig``: a quarter of the evaluation budget."""
        return max(2, self.budget // 4)

    @model_validator(mode="after")
    def _chunks_fit_the_budget(self) -> "ExplainSettings":
        if self.chunk > self.texts_per_s:
            raise ValueError(f"chunk ({self.chunk}) must not exceed texts_per_s ({self.texts_per_s:g})")
        return self


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
    drain_s: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="after SIGTERM, seconds /readyz answers 503 while requests are still served, before the "
        "listener closes (for load balancers that poll readiness; Kubernetes' preStop sleep does this job)",
    )
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
    backend: Literal["torch", "onnx"] = Field(
        default="onnx",
        description="what answers: each version's ONNX graph in ONNX Runtime (CPU provider; on a CUDA "
        "machine the CUDA provider in fp32 when onnxruntime-gpu is installed, else PyTorch on CUDA), or "
        "PyTorch eager. A version published without a graph is served by PyTorch either way; a corrupt "
        "graph, or one that does not answer like its adapter, is refused (docs/serving-backends.md)",
    )
    int8: bool = Field(
        default=True,
        description="with the onnx backend, serve a version's int8 graph when it has one (published "
        "only within train.export.max_int8_f1_loss of the fp32 graph), else its fp32 graph",
    )
    onnx_threads: int = Field(
        default=0, ge=0, description="intra-op threads of ONNX Runtime per model call; 0: every core"
    )
    explain: ExplainSettings = Field(default_factory=ExplainSettings)
    omp_passive: bool = Field(
        default=True, description="OMP_WAIT_POLICY=PASSIVE in workers: idle model threads yield the CPU"
    )
