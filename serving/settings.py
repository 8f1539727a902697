"""Settings section owned by the inference workers."""

from pydantic import BaseModel, Field


class ServeSettings(BaseModel):
    """HTTP serving and hot-swap behaviour."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    top_k: int = Field(default=3, ge=1)
    max_batch: int = Field(default=64, ge=1)
    max_query_chars: int = Field(default=512, ge=1)
    reconcile_interval_s: float = Field(default=2.0, gt=0)
