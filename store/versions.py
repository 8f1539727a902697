"""Adapter versions, training runs and the alias audit trail in Postgres, plus promotion.

Promotion writes the audit row first, then moves the Redis alias: if Redis is down the CLI fails
loudly and a later ``registry promote``/``reconcile`` finishes the move from the recorded truth.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import Database
from store.exceptions import StoreError, VersionNotFoundError
from store.models import AdapterVersion, AliasEvent, TrainingRun
from store.registry import RedisRegistry

CHAMPION = "champion"
CANARY = "canary"
RETIRE = "retire"  # alias event action: the alias points nowhere from then on (a retired canary)


def alias_name(role: str, market: str | None = None) -> str:
    """The alias of ``role`` (champion/canary) for ``market``: ``champion``, ``canary.de``, ...

    Markets (locales, shops) served by one worker each have their own champion and canary; the
    default market keeps the plain names, so single-market deployments never see a suffix.
    """
    return role if market is None else f"{role}.{market}"


def start_run(session: Session, *, trigger: str, params: dict[str, Any]) -> int:
    run = TrainingRun(trigger=trigger, params=params, status="running")
    session.add(run)
    session.flush()
    return run.id


def finish_run(session: Session, run_id: int, *, status: str, **fields: Any) -> None:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise StoreError(f"training run {run_id} vanished")
    run.status = status
    run.finished_at = datetime.now(UTC)
    for key, value in fields.items():
        setattr(run, key, value)


def record_version(
    session: Session, *, version: str, manifest: dict[str, Any], uri: str, run_id: int | None
) -> None:
    """Idempotent: the same content trained twice is one version."""
    if session.get(AdapterVersion, version) is None:
        session.add(
            AdapterVersion(
                version=version,
                base_model=str(manifest.get("base_model", {}).get("name", "?")),
                labels={"labels": manifest.get("labels", [])},
                metrics=manifest.get("metrics", {}),
                artifact_uri=uri,
                training_run_id=run_id,
            )
        )


def list_versions(session: Session) -> list[AdapterVersion]:
    return list(session.scalars(select(AdapterVersion).order_by(AdapterVersion.created_at.desc())).all())


def alias_history(session: Session, alias: str = CHAMPION, limit: int = 50) -> list[AliasEvent]:
    stmt = select(AliasEvent).where(AliasEvent.alias == alias).order_by(AliasEvent.id.desc()).limit(limit)
    return list(session.scalars(stmt).all())


def recorded_alias(session: Session, alias: str = CHAMPION) -> str | None:
    """The alias as the audit trail says it is (the truth Redis is re-seeded from); ``None`` when it
    was never set or its latest move retired it."""
    latest = alias_history(session, alias, limit=1)
    return latest[0].version if latest and latest[0].action != RETIRE else None


@dataclass(frozen=True)
class AliasMove:
    alias: str
    version: str
    previous: str | None


def promote(
    db: Database, registry: RedisRegistry, version: str, *, actor: str, reason: str, alias: str = CHAMPION
) -> AliasMove:
    """Point ``alias`` at ``version``: audit row in Postgres, then the Redis key and a hint."""
    with db.session() as session:
        if session.get(AdapterVersion, version) is None:
            raise VersionNotFoundError(f"no adapter version {version!r}; see `intentloop registry list`")
        previous = recorded_alias(session, alias)
        session.add(
            AliasEvent(
                alias=alias, version=version, previous=previous, action="promote", actor=actor, reason=reason
            )
        )
    registry.set_alias(alias, version)
    return AliasMove(alias, version, previous)


def rollback(
    db: Database, registry: RedisRegistry, *, actor: str, reason: str, alias: str = CHAMPION
) -> AliasMove:
    """Point ``alias`` back at the version it pointed to before the latest move."""
    with db.session() as session:
        history = alias_history(session, alias, limit=1)
        if not history or history[0].previous is None:
            raise StoreError(f"{alias} has no earlier version to roll back to")
        current, target = history[0].version, history[0].previous
        previous_of_target = _previous_of(session, alias, target, before_id=history[0].id)
        session.add(
            AliasEvent(
                alias=alias,
                version=target,
                previous=previous_of_target,
                action="rollback",
                actor=actor,
                reason=reason,
            )
        )
    registry.set_alias(alias, target)
    return AliasMove(alias, target, current)


def _previous_of(session: Session, alias: str, version: str, *, before_id: int) -> str | None:
    """What preceded ``version`` when it last became the alias, so repeated rollbacks walk back."""
    stmt = (
        select(AliasEvent.previous)
        .where(AliasEvent.alias == alias, AliasEvent.version == version, AliasEvent.id < before_id)
        .order_by(AliasEvent.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def reconcile_alias(db: Database, registry: RedisRegistry, alias: str = CHAMPION) -> str | None:
    """The alias's version, re-seeding Redis from Postgres when Redis lost it (e.g. restarted empty)."""
    live = registry.get_alias(alias)
    if live is not None:
        return live
    with db.session() as session:
        recorded = recorded_alias(session, alias)
    if recorded is not None:
        registry.set_alias(alias, recorded)
    return recorded


def retire_alias(db: Database, registry: RedisRegistry, alias: str, *, actor: str, reason: str) -> AliasMove:
    """Point ``alias`` nowhere (a canary rolled back: all its traffic returns to the champion).

    The audit row keeps the retired version in ``version`` with action ``retire``; ``recorded_alias``
    reads that as "unset", so a Redis restart cannot bring a retired canary back.
    """
    with db.session() as session:
        current = recorded_alias(session, alias)
        if current is None:
            raise StoreError(f"{alias} points at no version: nothing to roll back")
        session.add(
            AliasEvent(
                alias=alias, version=current, previous=current, action=RETIRE, actor=actor, reason=reason
            )
        )
    registry.clear_alias(alias)
    return AliasMove(alias, current, current)


def graduate_canary(
    db: Database, registry: RedisRegistry, *, actor: str, reason: str, market: str | None = None
) -> AliasMove:
    """The canary's version becomes the champion (its market's), and the canary is retired."""
    canary, champion = alias_name(CANARY, market), alias_name(CHAMPION, market)
    with db.session() as session:
        version = recorded_alias(session, canary)
    if version is None:
        raise StoreError(f"{canary} points at no version: start a canary first")
    move = promote(db, registry, version, actor=actor, reason=f"canary graduated: {reason}", alias=champion)
    retire_alias(db, registry, canary, actor=actor, reason=f"graduated to {champion}")
    return move


def reconcile_aliases(db: Database, registry: RedisRegistry, aliases: list[str]) -> dict[str, str | None]:
    """Every alias of ``aliases`` in one Redis read; the unset ones are looked up in Postgres (one
    session) and re-seeded into Redis, as :func:`reconcile_alias` does for one."""
    live = registry.get_aliases(aliases)
    missing = [a for a, v in live.items() if v is None]
    if missing:
        with db.session() as session:
            recorded = {a: recorded_alias(session, a) for a in missing}
        for alias, version in recorded.items():
            if version is not None:
                registry.set_alias(alias, version)
                live[alias] = version
    return live
