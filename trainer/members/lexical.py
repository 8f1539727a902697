"""The lexical member: TF-IDF word 1-2-grams and character 2-5-grams (within words) + logistic regression.

Seconds to train, no encoder: strong where a query reuses words the training queries used, blind
to words it never saw (where the encoder member earns its place). The one definition of this
pipeline: the gate's ``tfidf`` baseline (:mod:`trainer.baselines`) is this model.

Saved as two files in an artifact directory: ``lexical.skops`` (the fitted pipeline, through
:mod:`trainer.members.skops_files`: no pickle, an explicit type allow-list, stable bytes) and
``lexical.json`` (the label order its probability columns follow).
"""

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from trainer.dataset import Example
from trainer.exceptions import NotEnoughDataError
from trainer.members import skops_files
from trainer.members.exceptions import CorruptMemberError

MODEL_FILE = "lexical.skops"
LABELS_FILE = "lexical.json"
FORMAT = "intentloop.lexical/1"

# Every type a saved pipeline holds (checked on load: anything else is refused). A scikit-learn
# upgrade that stores a new attribute type fails loudly here rather than loading something unknown.
TRUSTED_TYPES = (
    "builtins.dict",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.list",
    "builtins.str",
    "builtins.tuple",
    "builtins.NoneType",
    "numpy.float64",
    "numpy.ndarray",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.pipeline.Pipeline",
)


class LexicalModel:
    """A fitted TF-IDF + logistic-regression pipeline speaking the ``Predictor`` protocol."""

    def __init__(self, pipeline: Pipeline, labels: list[str], metrics: dict[str, Any] | None = None) -> None:
        self._pipeline = pipeline
        self._labels = list(labels)
        self.metrics = dict(metrics or {})
        classes = [str(c) for c in pipeline.classes_]
        # predict_proba columns follow ``classes_``; map them onto ``labels`` (absent ones get 0).
        self._columns = [classes.index(label) if label in classes else -1 for label in self._labels]

    @property
    def labels(self) -> list[str]:
        return self._labels

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self._labels)), dtype=np.float32)
        raw = self._pipeline.predict_proba(list(texts))
        out = np.zeros((len(texts), len(self._labels)), dtype=np.float32)
        for j, col in enumerate(self._columns):
            if col >= 0:
                out[:, j] = raw[:, col]
        return out

    def save(self, directory: Path) -> list[Path]:
        """Write ``lexical.skops`` and ``lexical.json`` into ``directory``; returns both paths
        (each one's sha256 belongs in the manifest). Training metrics are not saved: they vary
        with wall time, and the manifest records them."""
        directory = Path(directory)
        model, labels = directory / MODEL_FILE, directory / LABELS_FILE
        _drop_address_caches(self._pipeline)
        model.write_bytes(skops_files.dumps(self._pipeline))
        labels.write_text(json.dumps({"format": FORMAT, "labels": self._labels}, sort_keys=True) + "\n")
        return [model, labels]

    @classmethod
    def load(cls, directory: Path) -> "LexicalModel":
        """The model saved in ``directory``; a file naming types outside :data:`TRUSTED_TYPES` is
        refused (:class:`~trainer.members.exceptions.UntrustedMemberError`)."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / LABELS_FILE).read_text())
            data = (directory / MODEL_FILE).read_bytes()
        except (OSError, ValueError) as exc:
            raise CorruptMemberError(f"cannot read the lexical member in {directory}: {exc}") from exc
        if (
            not isinstance(meta, dict)
            or meta.get("format") != FORMAT
            or not isinstance(meta.get("labels"), list)
        ):
            raise CorruptMemberError(f"{directory / LABELS_FILE}: not a lexical member's label file")
        pipeline = skops_files.loads(data, TRUSTED_TYPES)
        if not isinstance(pipeline, Pipeline):
            raise CorruptMemberError(
                f"{directory / MODEL_FILE} holds a {type(pipeline).__name__}, not a Pipeline"
            )
        return cls(pipeline, [str(label) for label in meta["labels"]])


def _drop_address_caches(pipeline: Pipeline) -> None:
    """Forget ``_stop_words_id``: scikit-learn caches the memory address of ``stop_words`` there to
    skip re-validating them, so it would make the same model save to different bytes per process.
    Without it the vectorizer only re-validates its (absent) stop words once."""
    for _, vectorizer in pipeline.named_steps["features"].transformer_list:
        if hasattr(vectorizer, "_stop_words_id"):
            del vectorizer._stop_words_id


def build_pipeline(*, seed: int = 13, c: float = 10.0) -> Pipeline:
    """The unfitted pipeline (``c``: inverse L2 strength; 10 suits sparse n-gram features)."""
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1)),
        ]
    )
    return Pipeline(
        [("features", features), ("clf", LogisticRegression(C=c, max_iter=2000, random_state=seed))]
    )


def train_lexical(
    train: list[Example], labels: list[str], *, seed: int = 13, c: float = 10.0
) -> LexicalModel:
    """Fit the lexical model; example weights (label confidence) weight the loss as in LoRA training."""
    if len({e.label for e in train}) < 2:
        raise NotEnoughDataError("the TF-IDF model needs training examples of at least 2 labels")
    started = time.monotonic()
    pipeline = build_pipeline(seed=seed, c=c)
    weights = np.asarray([max(e.weight, 0.0) for e in train], dtype=np.float64)
    pipeline.fit([e.text for e in train], [e.label for e in train], clf__sample_weight=weights)
    wall = time.monotonic() - started
    metrics = {
        "method": "tfidf_logreg",
        "train_examples": len(train),
        "wall_s": round(wall, 3),
        "samples_per_s": round(len(train) / wall, 2) if wall > 0 else None,
    }
    return LexicalModel(pipeline, labels, metrics)
