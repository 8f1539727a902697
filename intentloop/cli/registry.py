"""``intentloop registry``: adapter versions, the champion and canary aliases (``store.versions``)."""

import os

import click

from intentloop.cli.common import runtime


@click.group()
def registry() -> None:
    """Adapter versions and the champion alias."""


@registry.command("list")
def registry_list() -> None:
    """Every recorded version, newest first; * marks the champion; gate= its latest gate verdict."""
    from store.evaluations import latest_gate_by_version
    from store.versions import list_versions, reconcile_alias

    rt = runtime()
    champion = reconcile_alias(rt.db, rt.registry)
    with rt.db.session() as session:
        verdicts = latest_gate_by_version(session)
        for v in list_versions(session):
            f1 = v.metrics.get("val_macro_f1")
            mark = "*" if v.version == champion else " "
            f1_s = f"{f1:.3f}" if isinstance(f1, float) else "-"
            when = f"{v.created_at:%Y-%m-%d %H:%M:%S}"
            judged = verdicts.get(v.version)
            verdict = "-" if judged is None else ("blessed" if judged else "rejected")
            click.echo(
                f"{mark} {v.version}  {when}  val_macro_f1={f1_s}  gate={verdict}  run={v.training_run_id}"
            )


_MARKET = click.option("--market", default=None, help="The market's aliases (default: the default market).")


@registry.command("promote")
@click.argument("version")
@click.option("--reason", default="manual promotion", show_default=True)
@_MARKET
def registry_promote(version: str, reason: str, market: str | None) -> None:
    """Make VERSION the champion (of --market); workers switch to it without restarting."""
    from store.versions import CHAMPION, alias_name, promote

    rt = runtime()
    alias = alias_name(CHAMPION, market)
    move = promote(rt.db, rt.registry, version, actor=_actor(), reason=reason, alias=alias)
    click.echo(f"{move.alias}: {move.previous} -> {move.version}")


@registry.command("rollback")
@click.option("--reason", default="manual rollback", show_default=True)
@_MARKET
def registry_rollback(reason: str, market: str | None) -> None:
    """Point the champion (of --market) back at the version before its latest move."""
    from store.versions import CHAMPION, alias_name, rollback

    rt = runtime()
    move = rollback(rt.db, rt.registry, actor=_actor(), reason=reason, alias=alias_name(CHAMPION, market))
    click.echo(f"{move.alias}: {move.previous} -> {move.version}")


@registry.group("canary")
def registry_canary() -> None:
    """The canary alias: a share of sessions (INTENTLOOP_SERVE__CANARY_SHARE) tries a version first."""


@registry_canary.command("start")
@click.argument("version")
@click.option("--reason", default="canary started", show_default=True)
@_MARKET
def registry_canary_start(version: str, reason: str, market: str | None) -> None:
    """Send the canary share of sessions to VERSION; the rest stays on the champion."""
    from store.versions import CANARY, alias_name, promote

    rt = runtime()
    move = promote(
        rt.db, rt.registry, version, actor=_actor(), reason=reason, alias=alias_name(CANARY, market)
    )
    click.echo(f"{move.alias}: {move.previous} -> {move.version}")


@registry_canary.command("promote")
@click.option("--reason", default="canary promoted", show_default=True)
@_MARKET
def registry_canary_promote(reason: str, market: str | None) -> None:
    """Make the canary's version the champion and retire the canary."""
    from store.versions import graduate_canary

    rt = runtime()
    move = graduate_canary(rt.db, rt.registry, actor=_actor(), reason=reason, market=market)
    click.echo(f"{move.alias}: {move.previous} -> {move.version} (canary retired)")


@registry_canary.command("rollback")
@click.option("--reason", default="canary rolled back", show_default=True)
@_MARKET
def registry_canary_rollback(reason: str, market: str | None) -> None:
    """Retire the canary: all of its sessions return to the champion."""
    from store.versions import CANARY, alias_name, retire_alias

    rt = runtime()
    move = retire_alias(rt.db, rt.registry, alias_name(CANARY, market), actor=_actor(), reason=reason)
    click.echo(f"{move.alias}: {move.version} retired")


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"
