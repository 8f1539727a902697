"""``intentloop bench``: the benchmarks (``intentloop.bench``); each prints JSON on its last line."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import click

from intentloop.cli.common import load_settings, shoppers_option
from serving.settings import ExplainMethod

METHODS = get_args(ExplainMethod)

if TYPE_CHECKING:
    from intentloop.bench.train_text import Slice


@click.group()
def bench() -> None:
    """Benchmarks: they print numbers (JSON on the last line) and assert nothing."""


@bench.command("ingest")
@click.option("--events", default=1_000_000, show_default=True, help="Approximate stream size.")
@click.option("--seed", default=11, show_default=True)
@click.option(
    "--rate", type=float, default=None, help="Latency phase events/s [default: half the loaded max]."
)
@click.option("--latency-seconds", default=25.0, show_default=True, help="Length of the latency phase.")
@click.option(
    "--loaded-seconds",
    default=10.0,
    show_default=True,
    help="Length of the loaded-max phase (a producer offering 1.2x the backlog max beside the worker).",
)
@click.option("--keep-stack", is_flag=True, help="Leave the benchmark's servers running afterwards.")
def bench_ingest(
    events: int,
    seed: int,
    rate: float | None,
    latency_seconds: float,
    loaded_seconds: float,
    keep_stack: bool,
) -> None:
    """End-to-end ingest speed vs a raw consume + COPY baseline, label latency and worker memory.

    Uses its own servers under <state_dir>/bench on free ports for every unset URL (configured
    servers must be empty, and Postgres needs track_commit_timestamp=on).
    """
    from intentloop.bench.ingest import BenchOptions, run_ingest_bench

    opts = BenchOptions(events, seed, rate, latency_seconds, keep_stack, loaded_seconds)
    summary = run_ingest_bench(load_settings(), opts, echo=click.echo)
    click.echo(json.dumps(summary, default=str))


@bench.command("train")
@click.option(
    "--queries",
    type=click.IntRange(min=100),
    default=None,
    help="Labelled simulated searches [default: 50,000; 20,000 with --dimensions].",
)
@click.option("--seed", default=17, show_default=True, help="Same seed, same snapshot.")
@click.option(
    "--full-ft/--no-full-ft",
    default=False,
    show_default=True,
    help="Also fully fine-tune the encoder (the slowest phase, ~17 min at six epochs; off reports nulls).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs for LoRA and full fine-tuning, at least INTENTLOOP_TRAIN__MIN_STEPS steps "
    "[default: INTENTLOOP_TRAIN__EPOCHS, the product's recipe].",
)
@click.option(
    "--traffic",
    type=click.Choice(["long_tail", "shop"]),
    default="long_tail",
    show_default=True,
    help="Simulated traffic: a real click log's long tail, or the busy shop of the demo.",
)
@click.option(
    "--labels",
    "labels_from",
    type=click.Choice(["weak", "truth"]),
    default="weak",
    show_default=True,
    help="weak: the loop's own labeling (today's threshold vs the configured policy); truth: intents.",
)
@shoppers_option
@click.option(
    "--review",
    default=1000,
    show_default=True,
    help="Weak labels: reviewed queries (true intents) the fusion learns on; no member trains on them.",
)
@click.option(
    "--policy-variants",
    is_flag=True,
    help="Weak labels: also train issue 11's variants (today's thresholded vote, the other targets).",
)
@click.option(
    "--dimensions",
    is_flag=True,
    help="Instead: one adapter with a head per label dimension vs one single-head adapter per "
    "dimension on the same weak-labelled rows (quality per dimension and slice, weak labels, "
    "training time, serving cost).",
)
@click.option(
    "--help-csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --dimensions: real customer-service requests (CSV with instruction,category columns, "
    "e.g. the Bitext sample) replayed as help searches; held-out ones give the help recall.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def bench_train(
    queries: int | None,
    seed: int,
    full_ft: bool,
    epochs: int | None,
    traffic: str,
    labels_from: str,
    shoppers: str,
    review: int,
    policy_variants: bool,
    dimensions: bool,
    help_csv: Path | None,
    quiet: bool,
) -> None:
    """LoRA, TF-IDF, behaviour memory and their fusion (and full fine-tuning) on a simulated log.

    Prints speed (samples/s, wall time, trainable parameters, device) and quality (macro-F1
    overall, on the head/torso/tail slices and on unseen phrasings, typos and questions) of each,
    McNemar's test of LoRA against TF-IDF and of the fused model against its best member; with weak
    labels (default) also the labels' coverage and accuracy per evidence bucket. Needs no servers.
    """
    from intentloop.bench.train import run_train_bench
    from intentloop.bench.train_common import TrainBenchOptions

    if review < 0:
        raise click.BadParameter("need --review >= 0")
    settings = load_settings()
    if dimensions:
        from intentloop.bench.train_heads import HeadsBenchOptions, run_heads_bench

        heads_opts = HeadsBenchOptions(
            queries=queries or 20_000,
            seed=seed,
            epochs=epochs or settings.train.epochs,
            help_csv=help_csv,
            progress=not quiet,
        )
        click.echo(json.dumps(run_heads_bench(settings, heads_opts, echo=click.echo), default=str))
        return
    if help_csv is not None:
        raise click.BadParameter("--help-csv goes with --dimensions")
    queries = queries or 50_000
    opts = TrainBenchOptions(
        queries=queries,
        seed=seed,
        full_ft=full_ft,
        epochs=epochs or settings.train.epochs,
        progress=not quiet,
        traffic=traffic,
        labels=labels_from,
        shoppers=shoppers,
        review=review,
        policy_variants=policy_variants,
    )
    summary = run_train_bench(settings, opts, echo=click.echo)
    click.echo(json.dumps(summary, default=str))


def _int_list(_ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """A comma-separated list of non-negative integers (``--seeds``, ``--budgets``)."""
    try:
        out = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"not a comma-separated list of integers: {value!r}") from None
    if not out or min(out) < 0:
        raise click.BadParameter("need at least one integer, none negative")
    return out


@bench.command("review")
@click.option(
    "--queries",
    type=click.IntRange(min=500),
    default=20_000,
    show_default=True,
    help="Simulated searches a seed.",
)
@click.option("--seeds", default="17,18,19", show_default=True, callback=_int_list, help="Comma-separated.")
@click.option(
    "--budgets",
    default="0,50,100,200,400",
    show_default=True,
    callback=_int_list,
    help="Reviews, comma-separated (0: the weak labels alone; each budget retrains).",
)
@click.option(
    "--reviewer-error",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.05,
    show_default=True,
    help="Chance the simulated reviewer answers a wrong label (the same one for both strategies).",
)
@click.option(
    "--learner",
    type=click.Choice(["tfidf", "lora"]),
    default="tfidf",
    show_default=True,
    help="tfidf: the gate's TF-IDF baseline, seconds a fit (~3 min for the defaults on two CPU "
    "cores); lora: the product's LoRA fine-tuning with --epochs and min_steps 150, ~1.5 min a fit "
    "and 1 + 2 x (budgets - 1) fits a seed (~15 min a seed on two CPU cores).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=2, show_default=True, help="LoRA epochs (lora only)."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def bench_review(
    queries: int,
    seeds: tuple[int, ...],
    budgets: tuple[int, ...],
    reviewer_error: float,
    learner: str,
    epochs: int,
    quiet: bool,
) -> None:
    """Active vs random selection of the queries people review, on the simulator.

    A simulated reviewer (the shoppers' true intent, wrong with --reviewer-error) labels each
    strategy's picks; the learner retrains on the weak labels with the reviewed ones as gold.
    Prints held-out macro-F1 (overall and tail) against the review budget for both strategies
    (mean over the seeds and per seed) and whether the active strategy's tail gain at 200
    reviews is at least twice random's. Needs no servers.
    """
    from intentloop.bench.review import ReviewBenchOptions, run_review_bench

    opts = ReviewBenchOptions(
        queries=queries,
        seeds=seeds,
        budgets=budgets,
        reviewer_error=reviewer_error,
        learner=learner,
        epochs=epochs,
        progress=not quiet,
    )
    click.echo(json.dumps(run_review_bench(load_settings(), opts, echo=click.echo), default=str))


_SERVE_BACKENDS = ("torch", "onnx_fp32", "onnx_int8")  # intentloop.bench.backends.BACKENDS, unimported


def _backend_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in _SERVE_BACKENDS]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'none given'}; choose from {', '.join(_SERVE_BACKENDS)}"
        )
    return names


@bench.command("serve")
@click.option("--clients", default=32, show_default=True, help="Concurrent HTTP clients (max-rate phase).")
@click.option("--seconds", default=10.0, show_default=True, help="Length of each timed phase.")
@click.option("--batch1-requests", default=300, show_default=True, help="Sequential single requests.")
@click.option("--seed", default=5, show_default=True, help="Synthetic adapter and query set.")
@click.option(
    "--fused/--no-fused",
    default=True,
    show_default=True,
    help="Also serve a fused version (adapter + TF-IDF + memory) of the same encoder at full load.",
)
@click.option(
    "--heads/--no-heads",
    default=True,
    show_default=True,
    help="Also serve the same adapter with an intent-type head (both dimensions in every answer).",
)
@click.option(
    "--explain-clients",
    default=2,
    show_default=True,
    help="Clients asking /v1/explain during a second half-rate loop (0: skip that phase).",
)
@click.option(
    "--backends",
    "backends",
    default="torch,onnx_fp32,onnx_int8",
    show_default=True,
    callback=_backend_list,
    help="Serving backends to measure, one worker after another (comma-separated).",
)
@click.option(
    "--max-int8-f1-loss",
    type=click.FloatRange(0, 1),
    default=None,
    help="Macro-F1 the synthetic versions' int8 graphs may lose at export, a fraction [default: "
    "train.export's default, 0.005]; a looser one publishes int8 graphs to measure.",
)
def bench_serve(
    clients: int,
    seconds: float,
    batch1_requests: int,
    seed: int,
    fused: bool,
    heads: bool,
    explain_clients: int,
    backends: tuple[str, ...],
    max_int8_f1_loss: float | None,
) -> None:
    """HTTP inference speed of one worker per serving backend vs the same adapter called directly.

    Per backend (torch, onnx_fp32, onnx_int8): raw_qps (called in batches), qps (max, concurrent
    clients), ratio_vs_raw, p50/p99 at half that rate, batch1_p50_ms, macro-F1 on held-out queries
    and its loss vs raw eager PyTorch, RSS per extra loaded version; issue 18's targets. On the
    configured backend's worker also (--fused) the fused version's qps against the encoder-only
    one, (--heads) a two-head version's against the single-head one, and (--explain-clients) the
    intent latency at half rate with explanation traffic mixed in. Configured Postgres gets a
    scratch database; unset URLs get embedded servers.
    """
    from intentloop.bench.serve import ServeBenchOptions, run_serve_bench

    opts = ServeBenchOptions(
        clients=clients,
        seconds=seconds,
        batch1_requests=batch1_requests,
        seed=seed,
        fused=fused,
        heads=heads,
        explain_clients=explain_clients,
        backends=backends,
        max_int8_f1_loss=max_int8_f1_loss,
    )
    click.echo(json.dumps(run_serve_bench(load_settings(), opts, echo=click.echo), default=str))


@bench.command("explain")
@click.option(
    "--queries", default=6000, show_default=True, help="Simulated searches to train the adapter on."
)
@click.option("--epochs", default=3, show_default=True, help="Training epochs of that adapter.")
@click.option("--held-out", default=150, show_default=True, help="Held-out queries explained.")
@click.option("--max-words", default=8, show_default=True, help="Longest query explained (words).")
@click.option("--random", "random_", default=5, show_default=True, help="Random rankings per query.")
@click.option("--budget", default=None, type=int, help="[default: INTENTLOOP_SERVE__EXPLAIN__BUDGET]")
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(list(METHODS)),
    help="Methods to compare [default: all].",
)
@click.option(
    "--version", default=None, help="A published version to explain instead (needs --queries-file)."
)
@click.option(
    "--queries-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Held-out queries, one a line [default: the simulator's held-out queries].",
)
@click.option("--seed", default=17, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def bench_explain(
    queries: int,
    epochs: int,
    held_out: int,
    max_words: int,
    random_: int,
    budget: int | None,
    methods: tuple[str, ...],
    version: str | None,
    queries_file: Path | None,
    seed: int,
    quiet: bool,
) -> None:
    """Faithfulness (ERASER comprehensiveness / sufficiency vs random) and latency per method."""
    from intentloop.bench.explain import ExplainBenchOptions, run_explain_bench

    opts = ExplainBenchOptions(
        queries=queries,
        seed=seed,
        epochs=epochs,
        held_out=held_out,
        max_words=max_words,
        random=random_,
        budget=budget,
        methods=methods or METHODS,
        version=version,
        queries_file=queries_file,
        progress=not quiet,
    )
    click.echo(json.dumps(run_explain_bench(load_settings(), opts, echo=click.echo), default=str))


@bench.command("swap")
@click.option("--swaps", default=5, show_default=True, help="Promotions of a new adapter.")
@click.option("--rate", default=100.0, show_default=True, help="Requests/s to each of the two workers.")
@click.option("--interval", default=3.0, show_default=True, help="Seconds between promotions.")
@click.option("--seed", default=21, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["onnx", "torch"]),
    default="onnx",
    show_default=True,
    help="Workers' backend.",
)
@click.option(
    "--int8/--no-int8", default=True, show_default=True, help="With --backend onnx: serve the int8 graphs."
)
@click.option(
    "--max-int8-f1-loss",
    type=click.FloatRange(0, 1),
    default=None,
    help="Macro-F1 the synthetic versions' int8 graphs may lose at export, a fraction [default: "
    "train.export's default, 0.005]; a looser one publishes int8 graphs to measure.",
)
def bench_swap(
    swaps: int,
    rate: float,
    interval: float,
    seed: int,
    backend: str,
    int8: bool,
    max_int8_f1_loss: float | None,
) -> None:
    """Two workers under steady load while new adapters are promoted: swap latency, failures, mixing."""
    from intentloop.bench.swap import SwapBenchOptions, run_swap_bench

    opts = SwapBenchOptions(swaps, rate, interval, seed, backend, int8, max_int8_f1_loss)
    click.echo(json.dumps(run_swap_bench(load_settings(), opts, echo=click.echo), default=str))


@bench.command("aggregate")
@click.option(
    "--searches", type=click.IntRange(min=1000), default=60_000, show_default=True, help="Simulated searches."
)
@click.option(
    "--days", type=float, default=90.0, show_default=True, help="Days the searches span (the default window)."
)
@click.option(
    "--increment",
    type=click.FloatRange(0.001, 0.5),
    default=0.05,
    show_default=True,
    help="Share of the newest searches written after the first runs (the incremental run's work).",
)
@click.option(
    "--shards", type=click.IntRange(min=2), default=2, show_default=True, help="Shard processes to compare."
)
@click.option("--seed", default=23, show_default=True)
@click.option(
    "--traffic",
    type=click.Choice(["long_tail", "head"]),
    default="long_tail",
    show_default=True,
    help="long_tail: most queries searched once (the incremental run's worst case); head: queries "
    "repeat, as at production volume.",
)
def bench_aggregate(
    searches: int, days: float, increment: float, shards: int, seed: int, traffic: str
) -> None:
    """Label aggregation: searches/s of a full run vs an incremental one after new searches, and of
    one vs several shard processes, with a check that every way gives the same labels.

    Uses a new database on INTENTLOOP_POSTGRES__URL's server (dropped afterwards), else an
    embedded Postgres of its own; INTENTLOOP_LABELS__* configure the runs.
    """
    from intentloop.bench.aggregate import AggregateBenchOptions, run_aggregate_bench

    opts = AggregateBenchOptions(searches, days, increment, shards, seed, traffic)
    click.echo(json.dumps(run_aggregate_bench(load_settings(), opts, echo=click.echo), default=str))


def _slices(_ctx: click.Context, _param: click.Parameter, specs: tuple[str, ...]) -> tuple["Slice", ...]:
    from intentloop.bench.train_text import TextCsvError, parse_slice

    try:
        return tuple(parse_slice(spec) for spec in specs)
    except TextCsvError as exc:
        raise click.BadParameter(str(exc)) from None


@bench.command("text")
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labelled utterances, one a row, with a header.",
)
@click.option("--text-column", default="instruction", show_default=True)
@click.option("--label-column", default="intent", show_default=True)
@click.option(
    "--slice",
    "slices",
    multiple=True,
    callback=_slices,
    metavar="COLUMN=VALUE:NAME",
    help="Rows whose COLUMN contains VALUE (tags=Z:typo): scored as NAME, never trained on. Repeatable.",
)
@click.option("--train-per-label", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.3,
    show_default=True,
    help="Share of the distinct texts held out (by hash).",
)
@click.option("--seed", default=17, show_default=True, help="The few-shot sample per label.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="LoRA epochs [default: INTENTLOOP_TRAIN__EPOCHS].",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def bench_text(
    csv_path: Path,
    text_column: str,
    label_column: str,
    slices: tuple["Slice", ...],
    train_per_label: int,
    test_fraction: float,
    seed: int,
    epochs: int | None,
    quiet: bool,
) -> None:
    """The training recipe on real labelled text: LoRA (with and without typo copies) vs TF-IDF.

    Few-shot: at most --train-per-label training rows per label, from the texts outside the test
    bucket that no --slice matched. Prints macro-F1 and accuracy of each model overall, per slice
    and on the unsliced ("clean") test rows, and McNemar's test of LoRA against each other model.
    Needs no servers.
    """
    from intentloop.bench.train_text import TextBenchOptions, TextCsvError, read_rows, run_text_bench

    opts = TextBenchOptions(slices, train_per_label, test_fraction, seed, epochs, progress=not quiet)
    try:
        rows = read_rows(csv_path, text_column, label_column, slices)
        summary = run_text_bench(load_settings(), rows, opts, echo=click.echo)
    except TextCsvError as exc:
        raise click.BadParameter(str(exc), param_hint="--csv") from None
    click.echo(json.dumps({"csv": csv_path.name, **summary}, default=str))
