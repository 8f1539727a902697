"""The verdicts `bench serve` reports for issue 18's targets, from per-backend figures."""

from intentloop.bench.backends import BACKEND_KEYS, best_onnx, compare, labelled_queries


def _b(**figures: float | None) -> dict:
    return {**dict.fromkeys(BACKEND_KEYS), **figures}


def _run(torch_f1: float = 0.80, int8_f1: float = 0.80, int8_qps: float = 1100.0) -> dict:
    return {
        "torch": _b(raw_qps=500.0, qps=450.0, ratio_vs_raw=0.9, p99_ms=40.0, macro_f1=torch_f1),
        "onnx_fp32": _b(raw_qps=1100.0, qps=900.0, ratio_vs_raw=0.82, p99_ms=20.0, macro_f1=0.80),
        "onnx_int8": _b(raw_qps=1500.0, qps=int8_qps, ratio_vs_raw=0.73, p99_ms=20.0, macro_f1=int8_f1),
    }


def test_the_fastest_onnx_backend_within_the_f1_budget_is_judged_against_raw_eager() -> None:
    out = compare(_run())
    assert out["best_onnx"] == "onnx_int8" and out["raw_eager_qps"] == 500.0
    assert out["best_onnx_vs_raw_eager"] == 2.2  # served int8 qps over raw eager, not raw over raw
    assert out["targets"]["best_onnx_2x_raw_eager_within_f1"] is True
    assert out["targets"]["every_backend_ratio_vs_raw_0_8"] is False  # int8's 0.73
    assert out["targets"]["every_backend_p99_under_50ms"] is True


def test_an_int8_backend_over_the_f1_budget_gives_way_to_fp32() -> None:
    out = compare(_run(int8_f1=0.79))  # one point below eager
    assert out["backends"]["onnx_int8"]["f1_loss_pt"] == 1.0
    assert out["best_onnx"] == "onnx_fp32"
    assert out["targets"]["best_onnx_2x_raw_eager_within_f1"] is False  # fp32 900 < 2 x 500


def test_without_a_torch_run_nothing_is_judged_against_eager() -> None:
    backends = _run()
    del backends["torch"]
    out = compare(backends)
    assert all(b["f1_loss_pt"] is None for b in out["backends"].values())
    assert out["raw_eager_qps"] is None and out["targets"]["best_onnx_2x_raw_eager_within_f1"] is None


def test_a_skipped_backend_is_not_counted_in_every_backend_targets() -> None:
    backends = _run()
    backends["onnx_int8"] = _b(reason="int8 graph not published")
    backends["onnx_fp32"]["ratio_vs_raw"] = 0.85
    out = compare(backends)
    assert out["best_onnx"] == "onnx_fp32"
    assert out["targets"]["every_backend_ratio_vs_raw_0_8"] is True
    assert best_onnx({"torch": backends["torch"]}) is None


def test_the_labelled_queries_split_keeps_the_reported_rows_apart() -> None:
    data = labelled_queries(5, n=600)
    fit, check, report = ({q for q, _ in rows} for rows in (data.fit, data.held_out, data.report))
    assert fit and check and report and not (fit & check or fit & report or check & report)
    assert len(data.fit) > len(data.held_out) and len(data.fit) > len(data.report)
    assert labelled_queries(5, n=600) == data  # deterministic
