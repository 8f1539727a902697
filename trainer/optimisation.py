"""The optimisation of a fine-tuning run: AdamW with warm-up and linear decay, AdaLoRA's budget.

:class:`Optimisation` is what one training step works with and what an epoch checkpoint saves
(:mod:`trainer.checkpoint`), so a resumed run continues with exactly the state it stopped with.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from trainer.batches import Encoded, weighted_loss
from trainer.classifier import IntentClassifier, autocast
from trainer.settings import TrainSettings

if TYPE_CHECKING:
    from trainer.heads import HeadTask


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """The learning-rate factor per step: a linear warm-up over ``warmup`` steps, then a linear decay
    to 0 at ``total`` (``LambdaLR`` multiplies the base rate by it)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _adalora(model: IntentClassifier) -> Any | None:
    """The AdaLoRA tuner when the encoder carries one (it needs a per-step budget update)."""
    tuner = getattr(model.encoder, "base_model", None)
    return tuner if hasattr(tuner, "update_and_allocate") else None


def _orth_penalty(tuner: Any) -> torch.Tensor | None:
    """AdaLoRA's orthogonality regulariser on P and Q (PEFT adds it only for models that return a
    loss; our encoder returns hidden states, so it is added here)."""
    weight = float(tuner.peft_config[tuner.trainable_adapter_name].orth_reg_weight)
    terms = []
    for name, p in tuner.model.named_parameters():
        if p.requires_grad and ("lora_A" in name or "lora_B" in name):
            cov = p @ p.T if "lora_A" in name else p.T @ p
            eye = torch.eye(*cov.size(), out=torch.empty_like(cov))
            terms.append(torch.norm(cov - eye, p="fro"))
    if not terms or weight <= 0:
        return None
    return weight * torch.stack(terms).mean()


@dataclass
class Optimisation:
    """What a training step works with and an epoch checkpoint saves: the model, its seeded batch
    order, AdamW with the warm-up/linear-decay schedule, and AdaLoRA's rank allocator when present."""

    model: IntentClassifier
    trainable: list[torch.nn.Parameter]
    generator: torch.Generator
    loader: DataLoader[int]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    adalora: Any | None
    fingerprint: dict[str, Any]
    heads: list["HeadTask"] = field(default_factory=list)  # extra dimensions' losses, each step
    steps: int = 0  # optimizer steps taken (the extra heads' batches are a function of it)

    @classmethod
    def build(
        cls,
        model: IntentClassifier,
        data: Encoded,
        settings: TrainSettings,
        total_steps: int,
        *,
        with_adalora: bool,
        fingerprint: dict[str, Any] | None,
        heads: list["HeadTask"] | None = None,
    ) -> "Optimisation":
        trainable = [p for p in model.parameters() if p.requires_grad]
        generator = torch.Generator().manual_seed(settings.seed)
        indices: Any = list(range(len(data)))  # a list is a valid map-style dataset
        loader: DataLoader[int] = DataLoader(
            indices,
            batch_size=settings.batch_size,
            shuffle=True,
            generator=generator,
            collate_fn=data.collate,
            num_workers=0,
        )
        optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, linear_schedule(int(settings.warmup_ratio * total_steps), total_steps)
        )
        adalora = _adalora(model) if with_adalora else None
        return cls(
            model, trainable, generator, loader, optimizer, scheduler, adalora, fingerprint or {}, heads or []
        )

    def checkpointed(self) -> dict[str, Any]:
        """The keyword arguments :func:`trainer.checkpoint.save` and ``load`` take for this run."""
        allocator = (self.adalora, self.adalora.rankallocator) if self.adalora is not None else None
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "generator": self.generator,
            "fingerprint": self.fingerprint,
            "allocator": allocator,
        }

    def step(self, batch: dict[str, torch.Tensor], device: torch.device, step: int) -> torch.Tensor:
        """One optimizer step on ``batch`` (the run's ``step``-th) and each extra head's batch of
        that step; returns the summed loss."""
        with autocast(device):
            logits = self.model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        loss = weighted_loss(logits, batch, device)
        for head in self.heads:
            loss = loss + head.loss(self.model, step, device)
        penalty = _orth_penalty(self.adalora) if self.adalora is not None else None
        if penalty is not None:
            loss = loss + penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return loss
