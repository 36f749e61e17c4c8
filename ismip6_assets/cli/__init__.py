"""The ``ismip6`` command: ``sample-archive``, ``run``, ``reconcile`` and ``tag``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ismip6_assets.core.locations import ConfigError, Unreachable


def _settings(args):
    """Every setting checked before any work; the command hands them down as values."""
    from ismip6_assets.settings import load_settings

    return load_settings(args.source, args.store)


def cmd_sample_archive(args) -> int:
    from ismip6_assets.core.sample_archive import write_sample_archive

    files = write_sample_archive(args.dest, n_times=args.times)
    if args.quirks:
        from ismip6_assets.core.sample_quirks import write_quirk_archive

        files += write_quirk_archive(args.dest)
    print(f"wrote {len(files)} files under {args.dest}/Projection-AIS")
    return 0


def cmd_run(args) -> int:
    from ismip6_assets.settings import resolve

    settings = _settings(args)  # before Dagster's imports: a bad setting fails in a blink
    source, store = resolve(settings)
    from ismip6_assets.cli.daemon_process import code_server, instance_for_command, running_daemon

    # The code server and the daemon start before Dagster's imports here, the pipeline's and the
    # plan, so their start-ups overlap them (daemon_process.py).
    with code_server() as server, instance_for_command(settings.dagster_home) as instance:
        log = None if args.verbose else os.path.join(instance.root_directory, "ismip6-daemon.log")
        with running_daemon(instance, log, server):
            outcomes = _run(args, settings, source, store, instance)
    totals = {k: sum(getattr(o, k) for o in outcomes) for k in ("files", "written", "removed", "failures")}
    statuses = {s: sum(o.status == s for o in outcomes) for s in ("OK", "WARN", "ERROR", "FAILED")}
    print(f"\n{len(outcomes)} partitions ({sum(o.ran for o in outcomes)} run), {totals['files']} files, {totals['written']} groups written, "
          f"{totals['removed']} removed, {totals['failures']} failures")
    print("checks: " + ", ".join(f"{n} {s}" for s, n in statuses.items()))
    return 1 if statuses["ERROR"] or statuses["FAILED"] or not outcomes else 0


def _run(args, settings, source, store, instance) -> list:
    from ismip6_assets.defs.resources import archive_resource_for
    from ismip6_assets.cli.runs import run_archive

    from ismip6_assets.core.store import repository_exists

    archive = archive_resource_for(settings)
    archive.source  # noqa: B018 - fail on a bad source before any work
    print(f"source {source.url}\nstore  {store.url}")
    if not repository_exists(store, settings.store_setting):  # a typo in --store must not pass unnoticed
        print(f"creating a new Icechunk store at {store.url}")

    def progress(i, n, o):
        print(
            f"[{i}/{n}] {o.partition:<36} {o.status:<6} files={o.files} written={o.written} removed={o.removed} "
            f"failures={o.failures} " + (f"{o.seconds:.1f}s" if o.ran else "(store already current: no run)"),
            flush=True,
        )
        for f in o.findings:
            print(f"      {f['category']}: {f['item']}" + (f" ({f['reason']})" if f.get("reason") else ""))

    return run_archive(archive, instance, progress, force=args.all)


def cmd_reconcile(args) -> int:
    from ismip6_assets.settings import resolve

    settings = _settings(args)
    source, store = resolve(settings, existing_store=True)  # read-only: a store must be there; nothing is written
    from ismip6_assets.defs.resources import archive_resource_for
    from ismip6_assets.cli.runs import reconcile_archive

    print(f"source {source.url}\nstore  {store.url}")

    def progress(i, n, d):
        c = d.counts()
        print(f"[{i}/{n}] {d.partition:<36} {d.status:<6} " + " ".join(f"{k}={v}" for k, v in c.items()), flush=True)
        for row in d.rows():
            if row["category"] != "skipped":
                group = f" [group {row['group']}]" if row.get("group") else ""
                print(f"      {row['category']}: {row['item']}{group}" + (f" ({row['reason']})" if row.get("reason") else ""))

    diffs = reconcile_archive(archive_resource_for(settings), progress)
    totals = {k: sum(d.counts()[k] for d in diffs) for k in ("indexed", "ok", "missing", "stale", "extra", "failed", "skipped")}
    print(f"\n{len(diffs)} partitions: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    errors = sum(d.status == "ERROR" for d in diffs)
    print(f"checks: {sum(d.status == 'OK' for d in diffs)} OK, {sum(d.status == 'WARN' for d in diffs)} WARN, {errors} ERROR")
    return 1 if errors or not diffs else 0


def cmd_tag(args) -> int:
    from ismip6_assets.core.maintenance import TagError, tag_main
    from ismip6_assets.settings import resolve
    from ismip6_assets.core.store import open_repository

    settings = _settings(args)
    source, store = resolve(settings, existing_store=True)  # tags a store; never creates one
    try:
        snapshot = tag_main(open_repository(store, source, snapshot_cache_nodes=settings.snapshot_cache_nodes), args.name)
    except TagError as exc:
        print(f"ismip6: {exc}", file=sys.stderr)
        return 2
    print(f"tagged main of {store.url} as {args.name!r}: snapshot {snapshot} (never expired by store_maintenance)")
    print(f"open it with repo.readonly_session(tag={args.name!r})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ismip6", description="Virtualize the ISMIP6 archive into Icechunk.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample-archive", help="write a synthetic archive of real NetCDF files")
    p.add_argument("dest")
    p.add_argument("--times", type=int, default=5, help="time steps per file (default 5)")
    p.add_argument("--quirks", action="store_true", help="also write one file per known quirk of the real archive")
    p.set_defaults(func=cmd_sample_archive)
    for name, func, text in (("run", cmd_run, "index, virtualize and commit every partition"), ("reconcile", cmd_reconcile, "compare the store with the archive")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--source", help="archive root (local path, file:// or gs://); default $ISMIP6_SOURCE_URL")
        p.add_argument("--store", help="Icechunk store (local path, file:// or gs://); default $ISMIP6_STORE_URL")
        p.set_defaults(func=func)
        if name == "run":
            p.add_argument("--all", action="store_true", help="run every partition through Dagster, also those the store already matches")
            p.add_argument("-v", "--verbose", action="store_true", help="show the Dagster daemon's and the runs' logs")
    p = sub.add_parser("tag", help="tag the current main for citation (tags are immutable and never expired)")
    p.add_argument("name")
    p.add_argument("--source", help="archive root; default $ISMIP6_SOURCE_URL")
    p.add_argument("--store", help="Icechunk store; default $ISMIP6_STORE_URL")
    p.set_defaults(func=cmd_tag)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    try:
        return args.func(args)
    except Unreachable as exc:
        print(f"ismip6: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"ismip6: configuration error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if type(exc).__name__ != "DaemonGone":
            raise
        print(f"ismip6: {exc}", file=sys.stderr)
        return 1


def entry() -> None:
    """Console-script entry point.

    Exits without interpreter finalization: runs of `ismip6 reconcile` now and then segfaulted here
    during teardown of native extension state after all work and output were done (exit 139 with a
    complete report). Everything is flushed first, so nothing is lost by skipping finalization.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
