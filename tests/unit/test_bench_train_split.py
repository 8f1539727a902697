"""`bench train` (weak labels): what is held out, from whom, and when (intentloop.bench.train_weak)."""

from intentloop.bench.train_common import TrainBenchOptions
from intentloop.bench.train_weak import _rows, _simulate
from store.settings import TaxonomySettings
from streams.weak.policies import LabelDistribution
from trainer.settings import TrainSettings
from trainer.split import is_validation


def _echo(_: str) -> None:
    pass


def test_snapshot_is_taken_at_the_cut_and_held_out_queries_are_never_trained():
    opts = TrainBenchOptions(queries=3000, seed=5, review=150)
    traffic = _simulate(opts, TaxonomySettings(), TrainSettings(), _echo)
    cut = len(traffic.before)
    assert cut == round(0.8 * len(traffic.records))
    assert all(r.ts <= traffic.records[cut].ts for r in traffic.before)

    test = {q for q, _ in traffic.test}
    reviewed = {q for q, _ in traffic.review}
    unseen = {q for q, kinds in traffic.kinds.items() if "unseen_phrasing" in kinds}
    after = {r.norm_text for r in traffic.records[cut:]}
    assert test and reviewed and unseen & test
    assert test <= after  # scored on the searches after the snapshot
    assert all(is_validation(q, opts.test_fraction) or q in unseen for q in test)
    assert not reviewed & test and len(reviewed) == 150
    assert reviewed <= {r.norm_text for r in traffic.before}
    assert (test | reviewed) <= traffic.held_out and unseen & set(traffic.counts) <= traffic.held_out

    dists = {q: LabelDistribution(q, "x", 1.0, 1.0, {"x": 1.0}, False, searches=1) for q in traffic.counts}
    trained = {e.text for e in _rows(dists, TrainSettings(), traffic.held_out)}
    assert trained and not trained & traffic.held_out
