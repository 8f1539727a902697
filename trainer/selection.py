"""Which epoch a fine-tuning run keeps: scored on the validation rows, stopped early on a plateau.

The epoch is selected on the validation rows with a gold label when there are at least
``early_stop_min_gold`` of them (weak labels can be systematically wrong, and selecting on them
rewards learning their mistakes), else on all validation rows; ``early_stopping_on`` in the
run's metrics says which. Without validation rows every epoch runs and the last one is kept.
"""

import logging
from dataclasses import dataclass
from typing import Any

import torch

from trainer.batches import Encoded, predict
from trainer.checkpoint import Progress
from trainer.classifier import IntentClassifier
from trainer.dataset import Example
from trainer.inputs import InputFormat
from trainer.metrics import accuracy, macro_f1

log = logging.getLogger(__name__)
_IMPROVED = 1e-9  # a selection macro-F1 must beat the best by more than this to count as better


@dataclass
class Validation:
    """The validation rows, and which of them select the epoch: the gold ones when there are enough."""

    labels: list[str]
    data: Encoded | None
    truth: list[str]
    gold_idx: list[int]
    on_gold: bool

    @classmethod
    def of(
        cls,
        val: list[Example],
        tokenizer: Any,
        labels: list[str],
        fmt: InputFormat,
        min_gold: int,
    ) -> "Validation":
        label_ids = {label: i for i, label in enumerate(labels)}
        gold_idx = [i for i, e in enumerate(val) if e.gold]
        data = Encoded(val, tokenizer, label_ids, fmt) if val else None
        return cls(list(labels), data, [e.label for e in val], gold_idx, len(gold_idx) >= min_gold)

    def describe(self) -> str:
        """What selects the epochs, for the log."""
        if self.on_gold:
            return f"{len(self.gold_idx)} gold validation rows"
        if self.data is not None:
            return "weak validation labels"
        return "nothing (no validation rows: every epoch runs)"

    def select(
        self, model: IntentClassifier, device: torch.device, state: Progress, patience: int
    ) -> dict[str, Any]:
        """Score the epoch ``state`` just finished; keep its weights when it is the best so far, and
        stop early after ``patience`` epochs without improvement. Returns the epoch's scores."""
        epoch = state.epoch
        if self.data is None:  # nothing to select on: keep the last epoch
            state.best = (float("nan"), float("nan"), epoch)
            return {}
        scores, sel_f1, sel_acc = self._score(model, device)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        if state.best is None or sel_f1 > state.best[0] + _IMPROVED:
            state.best, state.since_best = (sel_f1, sel_acc, epoch), 0
            state.best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        else:
            state.since_best += 1
            if state.since_best >= patience:
                log.info("early stop after epoch %d (best epoch %d)", epoch, state.best[2])
                state.stopped_early = True
        return scores

    def summary(
        self, model: IntentClassifier, device: torch.device, best: tuple[float, float, int]
    ) -> dict[str, Any]:
        """The chosen epoch's scores on every validation row (and on gold, when selected on gold)."""
        final: dict[str, Any] = {}
        if self.data is not None:
            pred = self._predict(model, device)
            final = {
                "val_macro_f1": round(macro_f1(self.truth, pred), 6),
                "val_accuracy": round(accuracy(self.truth, pred), 6),
            }
            if self.on_gold:
                final["gold_val_macro_f1"] = round(best[0], 6)
                final["gold_val_accuracy"] = round(best[1], 6)
        return {
            "val_macro_f1": final.get("val_macro_f1"),
            "val_accuracy": final.get("val_accuracy"),
            **{k: v for k, v in final.items() if k.startswith("gold_")},
            "early_stopping_on": None if self.data is None else ("gold" if self.on_gold else "weak"),
            "val_gold_examples": len(self.gold_idx),
        }

    def _predict(self, model: IntentClassifier, device: torch.device) -> list[str]:
        assert self.data is not None
        return [self.labels[i] for i in predict(model, self.data, device)]

    def _score(self, model: IntentClassifier, device: torch.device) -> tuple[dict[str, Any], float, float]:
        """This epoch's scores, and the (macro-F1, accuracy) the epoch is selected on."""
        pred = self._predict(model, device)
        f1, acc = macro_f1(self.truth, pred), accuracy(self.truth, pred)
        scores: dict[str, Any] = {"val_macro_f1": f1, "val_accuracy": acc}
        if not self.on_gold:
            return scores, f1, acc
        g_true, g_pred = [self.truth[i] for i in self.gold_idx], [pred[i] for i in self.gold_idx]
        sel_f1, sel_acc = macro_f1(g_true, g_pred), accuracy(g_true, g_pred)
        scores.update(gold_macro_f1=sel_f1, gold_accuracy=sel_acc)
        return scores, sel_f1, sel_acc
