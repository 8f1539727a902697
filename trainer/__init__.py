"""Training: dataset snapshots from the store, LoRA fine-tuning with PEFT, evaluation, artifacts."""
