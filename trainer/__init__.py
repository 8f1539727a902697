"""Training: dataset snapshots from the store, LoRA fine-tuning with PEFT, evaluation, artifacts.

Set here, before any trainer module imports ``peft``/``transformers`` (``huggingface_hub`` reads
them once, at import): the trainer and the inference workers load encoders from local directories
only and must never reach the Hugging Face Hub. ``setdefault``: an operator's explicit value wins.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
