"""`intentloop status`: what is stored and how far ingestion is behind, in one look.

A shop feeding its own logs asks "has everything arrived, and what became of it?". The answer
spans two servers: Postgres (what was stored, rejected, labelled, trained) and Kafka (the
ingestion group's committed offsets against each partition's end). Each half is read on its own,
so an outage of one still shows the other, and the outage is reported (exit code 3) rather than
hidden behind a partial answer.
"""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url

from intentloop.runtime import Runtime
from store.exceptions import IntentloopError, StoreUnavailableError
from store.status import StoreCounts, store_counts
from streams.exceptions import KafkaUnavailableError
from streams.lag import PartitionLag, consumer_lag

_TOP = 6  # breakdown entries shown per line (the rest are summed as "N more")


@dataclass
class Status:
    """Both halves of the answer; a half is ``None`` when its server could not be read."""

    postgres: str  # URL without password
    kafka: str
    group: str
    store: StoreCounts | None = None
    lag: list[PartitionLag] | None = None
    errors: list[IntentloopError] = field(default_factory=list)

    @property
    def total_lag(self) -> int | None:
        return None if self.lag is None else sum(p.lag for p in self.lag)

    def as_dict(self) -> dict[str, Any]:
        kafka: dict[str, Any] = {"bootstrap": self.kafka, "group": self.group}
        if self.lag is not None:
            kafka["lag"] = self.total_lag
            kafka["caught_up"] = bool(self.lag) and self.total_lag == 0
            kafka["partitions"] = [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "start": p.start,
                    "end": p.end,
                    "lag": p.lag,
                }
                for p in self.lag
            ]
        return {
            "store": None if self.store is None else {"postgres": self.postgres, **self.store.as_dict()},
            "kafka": kafka,
            "errors": [str(e) for e in self.errors],
        }

    def lines(self) -> list[str]:
        """The human-readable form (the unreadable halves are left to the error line)."""
        return [line.rstrip() for line in (*self._store_lines(), *self._kafka_lines())]

    def _store_lines(self) -> list[str]:
        c = self.store
        if c is None:
            return []
        labels = f"{c.labelled} labelled, {c.abstained} abstained"
        champion = f"champion {c.champion}" if c.champion else "no champion"
        newest = c.newest_search.isoformat(timespec="seconds") if c.newest_search else "-"
        return [
            f"store  {self.postgres}",
            f"  searches            {c.queries:>9}  newest {newest}",
            f"  feedback            {c.feedback:>9}  {_breakdown(c.feedback_by_status)}",
            f"  dead letters        {c.dead_letters:>9}  {_breakdown(c.dead_letters_by_reason)}",
            f"  weak-label queries  {c.weak_label_queries:>9}",
            f"  aggregated labels   {c.labelled + c.abstained:>9}  {labels} {_paren(c.abstained_by_reason)}",
            *(
                f"  {d.replace('_', '-') + ' labels':<20}{n:>9}  labelled"
                for d, n in c.labelled_by_dimension.items()
            ),
            f"  gold labels         {sum(c.gold_by_purpose.values()):>9}  {_breakdown(c.gold_by_purpose)}",
            f"  catalog products    {c.catalog_products:>9}  {c.catalog_labels} intent labels",
            f"  adapter versions    {c.adapter_versions:>9}  {champion}",
        ]

    def _kafka_lines(self) -> list[str]:
        if self.lag is None:
            return []
        head = f"kafka  {self.kafka}  group {self.group}"
        if not self.lag:
            return [f"{head}: no input topics yet (`intentloop worker ingest` creates them)"]
        state = "caught up" if self.total_lag == 0 else "behind"
        rows = [
            f"  {p.topic + '/' + str(p.partition):<20} committed {_offset(p.committed):>9}  end {p.end:>9}  "
            f"lag {p.lag}"
            for p in self.lag
        ]
        return [f"{head}: lag {self.total_lag} ({state})", *rows]

    def raise_unavailable(self) -> None:
        """Raise what could not be read, as one error (exit code 3) after the rest was shown."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise StoreUnavailableError("; ".join(str(e) for e in self.errors))


def collect_status(rt: Runtime) -> Status:
    """Read both halves; a server that cannot be reached becomes an entry of ``errors``."""
    status = Status(
        postgres=make_url(rt.endpoints.postgres_url).render_as_string(hide_password=True),
        kafka=rt.endpoints.kafka_bootstrap,
        group=rt.settings.ingest.app_id,
    )
    try:
        rt.db.ping()  # before migrating: an unreachable server is one line, not a traceback
        db = rt.ready_db()  # a fresh database reads as zeros, not as an error
        with db.session() as session:
            status.store = store_counts(session)
    except StoreUnavailableError as exc:
        status.errors.append(exc)
    try:
        status.lag = consumer_lag(rt.endpoints.kafka_bootstrap, status.group)
    except KafkaUnavailableError as exc:
        status.errors.append(exc)
    return status


def _breakdown(counts: dict[str, int]) -> str:
    items = list(counts.items())
    shown = ", ".join(f"{k} {n}" for k, n in items[:_TOP])
    rest = sum(n for _, n in items[_TOP:])
    return shown + (f", {len(items) - _TOP} more ({rest})" if rest else "")


def _paren(counts: dict[str, int]) -> str:
    return f"({_breakdown(counts)})" if counts else ""


def _offset(value: int | None) -> str:
    return "-" if value is None else str(value)
