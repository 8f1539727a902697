"""The root ``intentloop`` group: logging, dependency noise, and the command groups it is made of."""

import logging
import warnings

import click

from intentloop.cli import (
    bench,
    db,
    demo,
    evaluate,
    explain,
    feed,
    labels,
    monitor,
    registry,
    review,
    stack,
    status,
    train,
    worker,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="intentloop")
def cli(verbose: bool) -> None:
    """intentloop: search feedback -> weak intent labels -> LoRA adapters -> hot-swapped inference.

    Configuration comes from INTENTLOOP_* environment variables (see README). With no server URLs
    set, commands use the embedded stack (`intentloop stack up`).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka", "httpx", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_dependencies()


def quiet_dependencies() -> None:
    """Silence dependency chatter nobody running intentloop can act on, each by its exact message."""
    # peft (0.21) reads `is_gradient_checkpointing` of every model it wraps, a property transformers
    # 5 deprecated: one FutureWarning per model load that neither we nor the operator can fix.
    warnings.filterwarnings(
        "ignore",
        message="`is_gradient_checkpointing` is deprecated",
        category=FutureWarning,
        module=r"transformers\.modeling_utils",
    )
    # kafka-python 3 warns when a step of its IO thread takes over 0.1 s (not configurable through
    # KafkaProducer); a producer sharing the GIL with a busy main thread (replay parsing JSON) trips
    # it every few seconds although every record is delivered and acknowledged.
    logging.getLogger("kafka.net.selector").addFilter(_not_a_slow_task_notice)


def _not_a_slow_task_notice(record: logging.LogRecord) -> bool:
    return "blocking the event loop" not in record.getMessage()


# In the order `intentloop --help` lists them (click sorts by name; this order is for the reader).
for command in (
    stack.stack,
    db.db,
    status.status_cmd,
    worker.worker,
    train.train,
    evaluate.eval_cmd,
    explain.explain_cmd,
    registry.registry,
    feed.simulate_cmd,
    feed.replay_cmd,
    feed.catalog,
    labels.labels,
    review.review,
    demo.demo,
    bench.bench,
    monitor.drift,
    monitor.dashboard,
):
    cli.add_command(command)
