"""A run interrupted after an epoch resumes from its checkpoint to the very same model."""

import pytest

from trainer import checkpoint
from trainer.dataset import Example
from trainer.exceptions import TrainerError
from trainer.finetune import fit
from trainer.settings import TrainSettings

LABELS = ["electronics", "fashion"]


class Crash(RuntimeError):
    pass


def _examples(n: int, offset: int = 0) -> list[Example]:
    words = {
        "fashion": ["red shoe", "blue dress", "wool scarf"],
        "electronics": ["usb cable", "hdmi hub", "mouse"],
    }
    return [
        Example(f"{words[LABELS[i % 2]][i % 3]} {i + offset}", LABELS[i % 2], weight=0.5 + (i % 3) / 4)
        for i in range(n)
    ]


def _crash_after(epoch: int):
    def hook(done: int, scores: dict) -> None:
        if done == epoch:
            raise Crash(f"injected crash after epoch {done}")

    return hook


def _fit(train, val, tiny_encoder_dir, settings, checkpoint_dir, **kwargs):
    """``fit`` with what every run here shares: the labels, max length 16, no progress bars."""
    return fit(
        train,
        val,
        LABELS,
        tiny_encoder_dir,
        settings,
        16,
        progress=False,
        checkpoint_dir=checkpoint_dir,
        **kwargs,
    )


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_interrupted_run_resumes_to_the_uninterrupted_result(method, tiny_encoder_dir, tmp_path):
    train, val = _examples(80), _examples(20, offset=500)
    settings = TrainSettings(
        min_steps=0, epochs=3, batch_size=16, learning_rate=5e-3, patience=5, seed=4, peft_method=method
    )
    fingerprint = {"data": "x", "method": method}
    whole = _fit(train, val, tiny_encoder_dir, settings, tmp_path / "whole", fingerprint=fingerprint)

    ckpt = tmp_path / "crashed"
    with pytest.raises(Crash):
        _fit(
            train,
            val,
            tiny_encoder_dir,
            settings,
            ckpt,
            fingerprint=fingerprint,
            on_epoch_end=_crash_after(1),
        )
    assert (ckpt / checkpoint.LATEST).read_text() == "epoch-1"
    epochs_after_resume: list[int] = []
    resumed = _fit(
        train,
        val,
        tiny_encoder_dir,
        settings,
        ckpt,
        fingerprint=fingerprint,
        resume=True,
        on_epoch_end=lambda e, s: epochs_after_resume.append(e),
    )
    assert epochs_after_resume == [2, 3]  # epoch 1 is not trained again
    assert resumed.metrics["resumed"] is True
    assert resumed.metrics["weights_sha256"] == whole.metrics["weights_sha256"]
    for key in ("val_macro_f1", "val_accuracy", "best_epoch", "epochs_run", "steps"):
        assert resumed.metrics[key] == whole.metrics[key], key


def test_resume_refuses_another_runs_checkpoint(tiny_encoder_dir, tmp_path):
    settings = TrainSettings(min_steps=0, epochs=2, batch_size=16, seed=4)
    train = _examples(32)
    with pytest.raises(Crash):
        _fit(
            train,
            [],
            tiny_encoder_dir,
            settings,
            tmp_path,
            fingerprint={"data": "a"},
            on_epoch_end=_crash_after(1),
        )
    with pytest.raises(TrainerError, match="belongs to another run"):
        _fit(train, [], tiny_encoder_dir, settings, tmp_path, fingerprint={"data": "b"}, resume=True)
    with pytest.raises(TrainerError, match="no checkpoint"):
        _fit(train, [], tiny_encoder_dir, settings, tmp_path / "empty", resume=True)
