"""The fusion's members: behaviour memory (smoothing, fallback, files) and the lexical model (files)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from trainer.dataset import Example
from trainer.members import skops_files
from trainer.members.exceptions import CorruptMemberError, UntrustedMemberError
from trainer.members.lexical import MODEL_FILE, LexicalModel, train_lexical
from trainer.members.memory import BehaviourMemory, build_memory

LABELS = ["electronics", "fashion", "toys"]
PRIOR = np.array([0.5, 0.3, 0.2])


def _memory(**kwargs):
    evidence = {
        "USB  Cable": {"electronics": 6.0, "fashion": 2.0},  # normalised to "usb cable"
        "red shoe": {"fashion": 1.0},  # below min_evidence
        "lego": {"toys": 4.0, "outside the taxonomy": 9.0, "fashion": -3.0},
    }
    kwargs.setdefault("prior", PRIOR)
    return build_memory(evidence, LABELS, searches={"usb cable": 40, "lego": 7, "red shoe": 1}, **kwargs)


def test_memory_smooths_toward_the_prior_by_hand():
    memory = _memory(alpha=2.0, min_evidence=3.0)
    proba = memory.predict_proba(["usb cable", "Lego"])
    # usb cable: counts (6, 2, 0), n = 8: (counts + 2 * prior) / 10
    assert proba[0] == pytest.approx([(6 + 1.0) / 10, (2 + 0.6) / 10, (0 + 0.4) / 10])
    # lego: the foreign label and the negative weight are dropped: counts (0, 0, 4), n = 4
    assert proba[1] == pytest.approx([1.0 / 6, 0.6 / 6, (4 + 0.4) / 6])
    assert memory.evidence(["usb cable", "LEGO", "nobody"]).tolist() == [8.0, 4.0, 0.0]
    assert memory.searches(["usb cable", "red shoe", "nobody"]).tolist() == [40.0, 1.0, 0.0]


def test_memory_answers_the_prior_below_min_evidence_and_for_unknown_queries():
    memory = _memory(alpha=2.0, min_evidence=5.0)
    proba = memory.predict_proba(["lego", "red shoe", "never searched"])
    assert np.allclose(proba, np.tile(PRIOR, (3, 1)))
    assert memory.evidence(["lego", "red shoe"]).tolist() == [0.0, 0.0]
    assert memory.predict_proba([]).shape == (0, 3)


def test_memory_keeps_the_most_evidenced_queries_and_a_default_prior():
    memory = _memory(max_queries=1, min_evidence=0.0)
    assert len(memory) == 1
    assert memory.evidence(["usb cable", "lego"]).tolist() == [8.0, 0.0]
    default = build_memory({"a": {"toys": 3.0}}, LABELS)
    # add-one smoothed evidence mix: (1, 1, 4) / 6
    assert default.prior == pytest.approx([1 / 6, 1 / 6, 4 / 6])


def test_memory_save_load_round_trip_is_byte_stable(tmp_path):
    memory = _memory()
    first = memory.save(tmp_path).read_bytes()
    loaded = BehaviourMemory.load(tmp_path)
    (tmp_path / "again").mkdir()
    assert loaded.save(tmp_path / "again").read_bytes() == first
    queries = ["usb cable", "lego", "red shoe", "x"]
    assert np.array_equal(loaded.predict_proba(queries), memory.predict_proba(queries))
    assert json.loads(first)["format"] == "intentloop.behaviour_memory/1"
    # the same evidence in another order is the same file
    reordered = build_memory(
        {"lego": {"toys": 4.0}, "USB  Cable": {"fashion": 2.0, "electronics": 6.0}},
        LABELS,
        searches={"red shoe": 1, "lego": 7, "usb cable": 40},
        prior=PRIOR,
    )
    (tmp_path / "reordered").mkdir()
    assert reordered.save(tmp_path / "reordered").read_bytes() == first


def test_memory_load_refuses_a_foreign_file(tmp_path):
    (tmp_path / "memory.json").write_text('{"format": "something else"}')
    with pytest.raises(CorruptMemberError):
        BehaviourMemory.load(tmp_path)


def _lexical():
    train = [Example(f"red shoe {i}", "fashion", weight=0.5 + i % 2) for i in range(15)]
    train += [Example(f"usb cable {i}", "electronics") for i in range(15)]
    train += [Example(f"lego bricks {i}", "toys") for i in range(15)]
    return train_lexical(train, LABELS, seed=3)


def test_lexical_save_load_gives_identical_probabilities(tmp_path):
    model = _lexical()
    paths = model.save(tmp_path)
    assert sorted(p.name for p in paths) == ["lexical.json", "lexical.skops"]
    loaded = LexicalModel.load(tmp_path)
    queries = ["red shoe 99", "usb cable", "lego", "unknown words"]
    assert loaded.labels == LABELS
    assert np.array_equal(loaded.predict_proba(queries), model.predict_proba(queries))
    assert loaded.predict_proba(queries)[0].argmax() == 1


def test_lexical_file_bytes_do_not_depend_on_the_process(tmp_path):
    """skops names entries after memory addresses; the saved bytes must not (a manifest hashes them)."""
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'tests/unit'); "
        "from test_members import _lexical; _lexical().save(Path(sys.argv[1]))"
    )
    digests = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        out.mkdir()
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        digests.append((out / MODEL_FILE).read_bytes())
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    ("foreign", "named"),
    [
        # names a function to call: skops itself would ask before loading it
        (
            Pipeline([("f", FunctionTransformer(np.exp)), ("clf", LogisticRegression())]),
            "FunctionTransformer",
        ),
        # an estimator skops trusts by default, but no lexical member holds one
        (Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]), "StandardScaler"),
    ],
)
def test_lexical_load_refuses_types_outside_its_allow_list(tmp_path, foreign, named):
    foreign.fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1]))
    _lexical().save(tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(sio.dumps(foreign))
    with pytest.raises(UntrustedMemberError, match=named):
        LexicalModel.load(tmp_path)


def test_skops_dumps_is_stable_and_loadable():
    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), np.array([0, 1]))
    a, b = skops_files.dumps(model), skops_files.dumps(model)
    assert a == b
    loaded = skops_files.loads(a, sorted(skops_files.types_in(a)))
    assert np.array_equal(loaded.coef_, model.coef_)
