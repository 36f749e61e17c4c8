"""The Dagster UI as a user lives in it: `dagster dev`, its GraphQL API, and a real headless Chromium.

One `dagster dev` (webserver + daemon, the repo's workspace.yaml, a temporary DAGSTER_HOME with the
repo's dagster.yaml, so runs go through the run queue) on 127.0.0.1 and a free port. Through GraphQL
the test adds a partition and launches `materialize_partition` for it, as the UI's buttons do, then
reads the reconciliation result; Chromium then loads the asset, check and graph pages and must show
the partition, the check status and the preview image. Screenshots go to ``test-artifacts/``.
Every process started here runs in one new process group, which is stopped and verified empty.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
PARTITION = "AWI/PISM1/exp05"
LOCATION = "ismip6_assets.definitions"
REPOSITORY = "__repository__"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The UI's "join the community" dialog covers the page on a first visit; a user dismisses it once.
DISMISS_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"


def chromium_executable() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    """Chromium and Playwright's Python package, or a skip that says what to install."""
    chromium = chromium_executable()
    if chromium is None:
        pytest.skip("headless Chromium is absent: `apt-get install -y chromium` (.ci/run does this in CI)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: `.venv/bin/pip install -e '.[test]'`")
    return chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces, so split after ')'.
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


class DagsterDev:
    """`dagster dev` in its own process group, and a GraphQL client for it."""

    def __init__(self, home: Path, source: Path, store: Path, log_path: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PYTHONPATH")}
        env |= {"DAGSTER_HOME": str(home), "ISMIP6_SOURCE_URL": str(source), "ISMIP6_STORE_URL": str(store)}
        dagster = Path(sys.executable).with_name("dagster")
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its webserver, daemon, code server and run workers share this group
            # A shell's background job inherits SIGINT ignored; dagster dev must hear it to shut down.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.pgid = self.proc.pid

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def gql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until_loaded(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                data = self.gql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
                    " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
                )
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
                continue
            entries = data["workspaceOrError"]["locationEntries"]
            loaded = [e for e in entries if e["name"] == LOCATION and e["loadStatus"] == "LOADED"]
            if loaded:
                error = loaded[0]["locationOrLoadError"]
                assert error["__typename"] == "RepositoryLocation", f"code location failed to load: {error}"
                return
            time.sleep(0.5)
        raise AssertionError(f"dagster dev did not load {LOCATION} within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> list[int]:
        """SIGINT to the group (dagster dev shuts its services down), then SIGKILL what is left.

        Returns the processes still in the group afterwards (none, or the test fails).
        """
        for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
            if not processes_in_group(self.pgid):
                break
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and processes_in_group(self.pgid):
                if self.proc.poll() is None:
                    try:
                        self.proc.wait(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.2)
        self._log.close()
        return processes_in_group(self.pgid)


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory, pristine_archive):
    require_browser()  # skip before starting anything
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    source = tmp / "archive"
    shutil.copytree(pristine_archive, source)
    ARTIFACTS.mkdir(exist_ok=True)
    server = DagsterDev(home, source, tmp / "store", ARTIFACTS / "dagster-dev.log")
    try:
        server.wait_until_loaded()
        yield server
    finally:
        left = server.stop()
        assert not left, f"processes of dagster dev still running after stop: {left}"


REPOSITORY_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

ADD_PARTITION = """
mutation($selector: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: "model_experiment", partitionKey: $key) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}"""

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""

RUN_STATUS = """query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"""

CHECK_EXECUTIONS = """
query($key: String!) {
  assetCheckExecutions(assetKey: {path: ["icechunk_commit"]}, checkName: "reconciliation", partition: $key, limit: 5) {
    runId status partition
    evaluation {
      success severity description
      metadataEntries { label ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } }
    }
  }
}"""

MATERIALIZATION = """
query($key: String!) {
  assetOrError(assetKey: {path: ["icechunk_commit"]}) {
    ... on Asset {
      assetMaterializations(partitions: [$key], limit: 1) {
        partition runId
        metadataEntries {
          label
          ... on MarkdownMetadataEntry { mdStr }
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
        }
      }
    }
  }
}"""

SENSORS = """
query($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) { ... on Repository { sensors { name description } } }
}"""

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def entries(metadata_entries: list[dict]) -> dict:
    out = {}
    for e in metadata_entries:
        out[e["label"]] = next((e[k] for k in ("mdStr", "text", "intValue") if k in e), None)
    return out


def materialize_partition(server: DagsterDev, key: str, timeout: float = 150) -> str:
    """Add the partition and launch the `materialize_partition` job for it, as the UI does."""
    added = server.gql(ADD_PARTITION, {"selector": REPOSITORY_SELECTOR, "key": key})["addDynamicPartition"]
    assert added["__typename"] == "AddDynamicPartitionSuccess", added
    params = {
        "selector": {**REPOSITORY_SELECTOR, "jobName": "materialize_partition"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
        "runConfigData": {},
    }
    launched = server.gql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = server.gql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in TERMINAL:
            break
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id} ended {status or 'not at all'} within {timeout}s:\n{server.log_tail()}"
    return run_id


def test_materialize_a_partition_then_see_it_and_its_check_in_the_browser(dagster_dev):
    server = dagster_dev
    started = time.monotonic()
    run_id = materialize_partition(server, PARTITION)
    run_seconds = time.monotonic() - started

    # The reconciliation result, through the API the check dashboard reads.
    executions = server.gql(CHECK_EXECUTIONS, {"key": PARTITION})["assetCheckExecutions"]
    assert [e["runId"] for e in executions] == [run_id]
    (execution,) = executions
    assert execution["status"] == "SUCCEEDED" and execution["partition"] == PARTITION
    evaluation = execution["evaluation"]
    check_metadata = entries(evaluation["metadataEntries"])
    assert evaluation["success"] and check_metadata["status"] == "OK", evaluation
    assert check_metadata["ok"] == 4 and check_metadata["missing"] == 0

    # What the asset page shows: the commit, and a preview read back through the store.
    (materialization,) = server.gql(MATERIALIZATION, {"key": PARTITION})["assetOrError"]["assetMaterializations"]
    metadata = entries(materialization["metadataEntries"])
    assert materialization["runId"] == run_id
    assert metadata["commit_id"] and metadata["groups_written"] == 4
    assert "data:image/png;base64," in metadata["preview"]
    assert "icechunk.Repository.open(" in metadata["open_with_xarray"]

    # The sensor says what it watches.
    sensors = {s["name"]: s for s in server.gql(SENSORS, {"selector": REPOSITORY_SELECTOR})["repositoryOrError"]["sensors"]}
    assert "Watches the source archive" in sensors["archive_sensor"]["description"]

    from playwright.sync_api import expect, sync_playwright

    # The UI loads asset and check state in several GraphQL round trips; on a loaded 2-core CI
    # machine the graph page was still "Loading..." after Playwright's default 5 s.
    expect.set_options(timeout=45_000)

    encoded = urllib.parse.quote(PARTITION, safe="")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=require_browser(), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_init_script(DISMISS_COMMUNITY_DIALOG)
            page = context.new_page()
            page.set_default_timeout(45_000)

            # The asset page of the partition: its key, the commit metadata, the preview image.
            page.goto(f"{server.base_url}/assets/icechunk_commit?partition={encoded}")
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            expect(page.get_by_text(PARTITION).first).to_be_visible()
            commit_row = page.locator("tr", has_text="commit_id")
            expect(commit_row).to_contain_text(metadata["commit_id"])
            page.screenshot(path=str(ARTIFACTS / "asset-page.png"))
            page.locator("tr", has_text="preview").get_by_text("[Show Markdown]").click()
            image = page.locator("img[src^='data:image/png']").first
            expect(image).to_be_visible()
            width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
            assert 100 <= width <= 400, f"preview image did not render at about 200 px: naturalWidth={width}"
            page.screenshot(path=str(ARTIFACTS / "preview.png"))
            page.keyboard.press("Escape")

            # The check page: the check, its status for the partition, and why it does not block.
            page.goto(f"{server.base_url}/assets/icechunk_commit?view=checks")
            expect(page.get_by_text("reconciliation").first).to_be_visible()
            expect(page.get_by_text("Passed").first).to_be_visible()
            expect(page.get_by_text(PARTITION).first).to_be_visible()
            expect(page.get_by_text("Non-blocking, deliberately")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "check-page.png"))

            # The asset graph: the partitioned assets and the catalog downstream of the commit. With
            # four nodes the graph opens zoomed out, which hides each node's check status: the
            # check's Passed is asserted on the check page above.
            page.goto(f"{server.base_url}/asset-groups")
            for name in ("file_index", "virtual_dataset", "icechunk_commit", "store_catalog"):
                expect(page.get_by_text(name).first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "asset-graph.png"))
        finally:
            browser.close()
    print(f"run of {PARTITION}: {run_seconds:.1f}s through the run queue")
