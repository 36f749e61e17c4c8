"""`store_diff`, `commit_plan` and `refresh_requests`: pure, on hand-made index rows and store states."""

from __future__ import annotations

import pandas as pd

from ismip6_assets.core.index import INDEX_COLUMNS
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.reconcile import commit_plan, refresh_requests, store_diff
from ismip6_assets.core.store_state import PartitionState, StoredGroup
from ismip6_assets.core.virtualize import FailureRecord

KEY = PartitionKey("AWI", "PISM1", "exp05")


def url(key: PartitionKey, var: str) -> str:
    return f"file:///a/Projection-AIS/{key.institution}/{key.model}/{key.experiment}/{var}_AIS_x_{key.experiment}.nc"


def rows(files: dict[PartitionKey, dict[str, str]], skipped: tuple[str, ...] = ()) -> pd.DataFrame:
    """Index rows: {partition: {variable: fingerprint}}."""
    out = [
        {"url": url(k, v), "institution": k.institution, "model_name": k.model, "experiment": k.experiment, "variable": v,
         "partition_key": str(k), "group": k.variable_group(v), "size": 1, "fingerprint": fp, "skipped": v in skipped}
        for k, variables in files.items() for v, fp in variables.items()
    ]
    return pd.DataFrame(out, columns=INDEX_COLUMNS)


def state(key: PartitionKey, groups: dict[str, str], failures: list[dict] = (), view: dict[str, str] | None | str = "current") -> PartitionState:
    """A stored partition; its view built from exactly its groups unless `view` says otherwise."""
    return PartitionState(
        groups={v: StoredGroup(v, key.variable_group(v), url(key, v), fp) for v, fp in groups.items()},
        failures=list(failures),
        exists=True,
        view_sources=(dict(groups) if groups else None) if view == "current" else view,
    )


def test_each_category_and_its_severity():
    index = rows({KEY: {"lithk": "f1", "orog": "f2-new", "acabf": "f3", "lim": "f4", "topg": "f5"}}, skipped=("topg",))
    failure = {"url": url(KEY, "lim"), "fingerprint": "f4", "error": "OSError: truncated"}
    stored = state(KEY, {"lithk": "f1", "orog": "f2", "base": "f9"}, [failure])

    diff = store_diff(KEY, index, stored)

    assert diff.ok == [url(KEY, "lithk")]
    assert diff.stale == [url(KEY, "orog")]
    assert diff.missing == [url(KEY, "acabf")]
    assert diff.extra == ["base"]  # its source file is gone
    assert diff.failed == [failure] and diff.skipped == [url(KEY, "topg")]
    assert diff.status == "ERROR" and diff.behind
    # Each row names the store group, so a report says which group to look at.
    assert {r["category"]: r["group"] for r in diff.rows()}["extra"] == "AWI_PISM1/exp05/base"
    assert {r["category"]: r["group"] for r in diff.rows()}["stale"] == "AWI_PISM1/exp05/orog"


def test_failed_only_is_warn_and_a_new_fingerprint_of_a_failed_file_is_missing():
    failure = {"url": url(KEY, "lim"), "fingerprint": "old", "error": "bad"}
    assert store_diff(KEY, rows({KEY: {"lim": "old"}}), state(KEY, {}, [failure])).status == "WARN"
    fixed = store_diff(KEY, rows({KEY: {"lim": "new"}}), state(KEY, {}, [failure]))
    assert fixed.missing == [url(KEY, "lim")] and fixed.status == "ERROR"


def test_a_check_that_compared_nothing_fails():
    nothing = store_diff(KEY, rows({}), PartitionState())
    assert nothing.indexed == 0 and nothing.status == "ERROR" and not nothing.behind
    assert nothing.rows()[0]["category"] == "no_files"
    gone = store_diff(KEY, rows({}), state(KEY, {"lithk": "f1"}))
    assert gone.partition_gone and gone.status == "ERROR" and gone.rows()[0]["category"] == "partition_gone"


def test_a_stale_file_that_now_fails_loses_its_group_and_an_empty_partition_is_removed():
    diff = store_diff(KEY, rows({KEY: {"orog": "f2-corrupt", "lithk": "f1"}}), state(KEY, {"orog": "f2", "lithk": "f1"}))
    failure = FailureRecord(url=url(KEY, "orog"), error="bad", institution="AWI", model_name="PISM1", experiment="exp05", variable="orog")
    plan = commit_plan(diff, files=[], new_failures=[failure])
    assert plan.remove == ["orog"] and plan.failures == [failure]
    # Folder deleted after its groups were removed: the run must not recreate an empty group.
    assert commit_plan(store_diff(KEY, rows({}), PartitionState()), [], []).remove_partition


def test_files_sharing_a_group_are_error_write_nothing_and_remove_nothing_and_a_skip_listed_copy_is_harmless():
    real, copy = url(KEY, "lithk"), url(KEY, "lithk").replace(".nc", " (copy).nc")
    index = pd.concat([rows({KEY: {"lithk": "f1"}}), rows({KEY: {"lithk": "f9"}}).assign(url=copy)], ignore_index=True)
    stored = state(KEY, {"lithk": "f1"})

    clash = store_diff(KEY, index.assign(duplicate=True), stored)
    assert clash.duplicate == [real, copy] and not clash.to_write and not clash.extra
    assert clash.status == "ERROR" and not clash.behind  # a run cannot fix it; a human deletes one
    assert commit_plan(clash, [], []).remove == []
    assert {r["item"] for r in clash.rows() if r["category"] == "duplicate"} == {real, copy}

    skip_listed = store_diff(KEY, index.assign(skipped=[False, True]), stored)
    assert skip_listed.ok == [real] and skip_listed.skipped == [copy] and not skip_listed.extra and skip_listed.status == "OK"


KEYS = [PartitionKey("I", "M", f"exp{i:02d}") for i in range(7)]


def test_first_start_is_requested_in_bounded_batches_and_each_state_once():
    index = rows({k: {"lithk": "f1"} for k in KEYS})
    first, cursor = refresh_requests(index, {}, {}, max_runs=3)
    assert [r.partition for r in first] == [str(k) for k in KEYS[:3]]
    second, cursor = refresh_requests(index, {}, cursor, max_runs=3)
    third, cursor = refresh_requests(index, {}, cursor, max_runs=3)
    assert [r.partition for r in second + third] == [str(k) for k in KEYS[3:]]
    assert refresh_requests(index, {}, cursor, max_runs=3)[0] == []  # all asked; runs pending
    # Same state, same key: a restarted sensor with an older cursor asks under the same keys.
    assert [r.run_key for r in refresh_requests(index, {}, {}, max_runs=3)[0]] == [r.run_key for r in first]


def test_only_partitions_the_store_is_behind_on_are_requested():
    index = rows({k: {"lithk": "f1"} for k in KEYS[:3]})
    states = {str(k): state(k, {"lithk": "f1"}) for k in KEYS[:3]}
    assert refresh_requests(index, states, {})[0] == []
    states[str(KEYS[1])] = state(KEYS[1], {})  # a group deleted by hand: archive unchanged
    requests, _ = refresh_requests(index, states, {})
    assert [r.partition for r in requests] == [str(KEYS[1])] and requests[0].diff.missing


def test_a_run_that_left_the_store_behind_is_retried_under_a_new_key_a_bounded_number_of_times():
    index = rows({KEYS[0]: {"lithk": "f1"}})
    (request,), cursor = refresh_requests(index, {}, {})
    assert refresh_requests(index, {}, cursor, run_finished=lambda k: False)[0] == []  # still running
    finished = lambda k: True  # noqa: E731 - failed, or succeeded without changing the store
    (retry,), cursor = refresh_requests(index, {}, cursor, run_finished=finished)
    assert retry.run_key == request.run_key + "#2"
    (retry,), cursor = refresh_requests(index, {}, cursor, run_finished=finished)
    assert retry.run_key == request.run_key + "#3"
    assert refresh_requests(index, {}, cursor, run_finished=finished)[0] == []  # max_attempts reached


def test_a_missing_or_stale_view_is_error_and_the_next_commit_rebuilds_it():
    index = rows({KEY: {"lithk": "f1", "orog": "f2"}})
    current = store_diff(KEY, index, state(KEY, {"lithk": "f1", "orog": "f2"}))
    assert current.view == "" and current.status == "OK" and not current.behind

    missing = store_diff(KEY, index, state(KEY, {"lithk": "f1", "orog": "f2"}, view=None))
    # Built from an older lithk, or from a group since lost by hand: both are stale.
    older = store_diff(KEY, index, state(KEY, {"lithk": "f1", "orog": "f2"}, view={"lithk": "f0", "orog": "f2"}))
    lost = store_diff(KEY, index, state(KEY, {"lithk": "f1"}, view={"lithk": "f1", "orog": "f2"}))
    for diff, category in ((missing, "view_missing"), (older, "view_stale"), (lost, "view_stale")):
        assert diff.status == "ERROR" and diff.behind and diff.counts()["view_behind"] == 1
        row = next(r for r in diff.rows() if r["category"] == category)
        assert row["item"] == "combined/AWI_PISM1/exp05" and "next run" in row["reason"]
        assert commit_plan(diff, [], []).rebuild_view
    assert not commit_plan(current, [], []).rebuild_view
    # The sensor asks again once the view changed: the run key carries the view's state.
    assert refresh_requests(index, {str(KEY): state(KEY, {"lithk": "f1", "orog": "f2"}, view=None)}, {})[0][0].partition == str(KEY)


def test_a_partition_without_groups_needs_no_view_and_loses_one_it_has():
    failure = {"url": url(KEY, "lim"), "fingerprint": "f4", "error": "bad"}
    assert store_diff(KEY, rows({KEY: {"lim": "f4"}}), state(KEY, {}, [failure])).view == ""
    left_over = store_diff(KEY, rows({KEY: {"lim": "f4"}}), state(KEY, {}, [failure], view={"lithk": "f1"}))
    assert left_over.view == "stale" and left_over.status == "ERROR"
    # A partition whose folder is gone is removed whole, view included: no separate view finding.
    gone = store_diff(KEY, rows({}), state(KEY, {"lithk": "f1"}))
    assert gone.partition_gone and gone.view == "" and commit_plan(gone, [], []).remove_partition


def test_a_failure_another_writer_recorded_meanwhile_is_kept_as_it_recorded_it():
    """This run virtualized `lim` (it was missing) and it failed; another writer's commit has since
    recorded the same failure: the plan keeps that record, not this run's copy of it."""
    recorded = {"url": url(KEY, "lim"), "error": "bad", "institution": "AWI", "model_name": "PISM1", "experiment": "exp05",
                "variable": "lim", "fingerprint": "f4", "timestamp": "earlier"}
    ours = FailureRecord(**{**recorded, "timestamp": "later"})
    diff = store_diff(KEY, rows({KEY: {"lim": "f4", "lithk": "f1"}}), state(KEY, {}, [recorded]))
    assert diff.failed == [recorded] and diff.missing == [url(KEY, "lithk")]
    assert [f.timestamp for f in commit_plan(diff, files=[], new_failures=[ours]).failures] == ["earlier"]
