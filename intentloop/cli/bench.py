"""``intentloop bench``: the benchmarks (``intentloop.bench``); each prints JSON on its last line."""

import json

import click

from intentloop.cli.common import load_settings


@click.group()
def bench() -> None:
    """Benchmarks: they print numbers (JSON on the last line) and assert nothing."""


@bench.command("ingest")
@click.option("--events", default=1_000_000, show_default=True, help="Approximate stream size.")
@click.option("--seed", default=11, show_default=True)
@click.option("--rate", type=float, default=None, help="Latency phase events/s [default: half the max].")
@click.option("--latency-seconds", default=25.0, show_default=True, help="Length of the latency phase.")
@click.option("--keep-stack", is_flag=True, help="Leave the benchmark's servers running afterwards.")
def bench_ingest(
    events: int, seed: int, rate: float | None, latency_seconds: float, keep_stack: bool
) -> None:
    """End-to-end ingest speed vs a raw consume + COPY baseline, label latency and worker memory.

    Uses its own servers under <state_dir>/bench on free ports for every unset URL (configured
    servers must be empty, and Postgres needs track_commit_timestamp=on).
    """
    from intentloop.bench.ingest import BenchOptions, run_ingest_bench

    opts = BenchOptions(events, seed, rate, latency_seconds, keep_stack)
    summary = run_ingest_bench(load_settings(), opts, echo=click.echo)
    click.echo(json.dumps(summary, default=str))


@bench.command("train")
@click.option("--queries", default=50_000, show_default=True, help="Labelled simulated searches.")
@click.option("--seed", default=17, show_default=True, help="Same seed, same snapshot.")
@click.option(
    "--full-ft/--no-full-ft",
    default=True,
    show_default=True,
    help="Also fully fine-tune the encoder (the slowest phase; off reports nulls).",
)
@click.option("--epochs", default=1, show_default=True, help="Epochs for LoRA and full fine-tuning.")
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
@click.option("--quiet", is_flag=True, help="No progress bars.")
def bench_train(
    queries: int, seed: int, full_ft: bool, epochs: int, traffic: str, labels_from: str, quiet: bool
) -> None:
    """LoRA vs full fine-tuning vs TF-IDF on a fixed simulated snapshot, held out by query.

    Prints speed (samples/s, wall time, trainable parameters, device) and quality (macro-F1
    overall and on the head/torso/tail slices) of each; with weak labels (default) also the labels'
    coverage and accuracy per evidence bucket and the soft-vs-hard and new-vs-old label policy
    comparisons (McNemar). Needs no servers.
    """
    from intentloop.bench.train import run_train_bench
    from intentloop.bench.train_common import TrainBenchOptions

    if queries < 100 or epochs < 1:
        raise click.BadParameter("need --queries >= 100 and --epochs >= 1")
    opts = TrainBenchOptions(
        queries=queries,
        seed=seed,
        full_ft=full_ft,
        epochs=epochs,
        progress=not quiet,
        traffic=traffic,
        labels=labels_from,
    )
    summary = run_train_bench(load_settings(), opts, echo=click.echo)
    click.echo(json.dumps(summary, default=str))


@bench.command("serve")
@click.option("--clients", default=32, show_default=True, help="Concurrent HTTP clients (max-rate phase).")
@click.option("--seconds", default=10.0, show_default=True, help="Length of each timed phase.")
@click.option("--batch1-requests", default=300, show_default=True, help="Sequential single requests.")
@click.option("--seed", default=5, show_default=True, help="Synthetic adapter and query set.")
def bench_serve(clients: int, seconds: float, batch1_requests: int, seed: int) -> None:
    """HTTP inference speed of one worker vs the same adapter called directly in batches.

    Prints qps (max, concurrent clients), p50/p99 at half that rate, raw_qps, ratio_vs_raw and
    batch1_p50_ms. Configured Postgres gets a scratch database; unset URLs get embedded servers.
    """
    from intentloop.bench.serve import ServeBenchOptions, run_serve_bench

    opts = ServeBenchOptions(clients=clients, seconds=seconds, batch1_requests=batch1_requests, seed=seed)
    click.echo(json.dumps(run_serve_bench(load_settings(), opts, echo=click.echo), default=str))


@bench.command("swap")
@click.option("--swaps", default=5, show_default=True, help="Promotions of a new adapter.")
@click.option("--rate", default=100.0, show_default=True, help="Requests/s to each of the two workers.")
@click.option("--interval", default=3.0, show_default=True, help="Seconds between promotions.")
@click.option("--seed", default=21, show_default=True)
def bench_swap(swaps: int, rate: float, interval: float, seed: int) -> None:
    """Two workers under steady load while new adapters are promoted: swap latency, failures, mixing."""
    from intentloop.bench.swap import SwapBenchOptions, run_swap_bench

    opts = SwapBenchOptions(swaps=swaps, rate=rate, interval_s=interval, seed=seed)
    click.echo(json.dumps(run_swap_bench(load_settings(), opts, echo=click.echo), default=str))
