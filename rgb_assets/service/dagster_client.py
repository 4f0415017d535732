"""The request API's view of Dagster: its webserver's GraphQL API, through ``dagster_graphql``.

``DagsterGraphQLClient`` reads run status (``get_run_status``); adding a dynamic partition,
finding runs by tags and launching (see :meth:`DagsterClient.launch`) go through the same
client's transport.
Its gql session is not thread-safe, so each thread of the service gets its own client.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from gql.transport.exceptions import TransportServerError

from rgb_assets.core.domain.errors import InputError

JOB_NAME = "monthly_composite_job"
#: Run states (or a run gone from the instance) a repeated request launches again.
RELAUNCH_STATES = frozenset({"FAILURE", "CANCELED", "NOT_FOUND"})

ADD_PARTITION = """
mutation AddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name,
                      partitionKey: $key) {
    __typename
    ... on Error { message }
  }
}
"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""

RUNS_BY_TAGS = """
query RunsByTags($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status creationTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""


class DagsterUnavailable(Exception):
    """The webserver did not answer (connection refused, timeout, 5xx): retry later."""


class DagsterRefused(Exception):
    """The webserver answered with an error (unknown job, invalid run config, ...)."""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str
    created: float
    tags: dict[str, str]


def _unavailable(exc: BaseException) -> bool:
    """Whether an error means Dagster may not have seen (or answered) the call."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (requests.RequestException, TransportServerError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class DagsterClient:
    """Add partitions, find a request's runs by tags, launch runs, on one code location."""

    def __init__(
        self,
        graphql_url: str,
        *,
        location: str = "rgb_assets",
        repository: str = "__repository__",
        timeout_s: int = 30,
    ) -> None:
        parsed = urlparse(graphql_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InputError("RGB_ASSETS_DAGSTER_GRAPHQL", f"{graphql_url!r} is not an http(s) URL")
        path = parsed.path.rstrip("/")
        if not path.endswith("/graphql"):
            raise InputError("RGB_ASSETS_DAGSTER_GRAPHQL", f"{graphql_url!r} must end in /graphql")
        self.url = graphql_url
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self._kwargs: dict[str, Any] = {
            "hostname": parsed.hostname,
            "port_number": parsed.port,
            "use_https": parsed.scheme == "https",
            "timeout": timeout_s,
            "path_prefix": path.removesuffix("/graphql"),
        }
        self.location = location
        self.repository = repository
        self._local = threading.local()

    def _client(self) -> DagsterGraphQLClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = DagsterGraphQLClient(**self._kwargs)
            self._local.client = client
        return client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DagsterGraphQLClientError as e:
            if _unavailable(e):
                # A timed-out session may be left connected: start the next call afresh.
                self._local.client = None
                raise DagsterUnavailable(
                    f"Dagster GraphQL at {self.url} unavailable ({what})"
                ) from None
            raise DagsterRefused(f"{what}: {e}") from None
        except requests.RequestException:
            self._local.client = None
            raise DagsterUnavailable(
                f"Dagster GraphQL at {self.url} unavailable ({what})"
            ) from None

    def _execute(self, what: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return self._call(what, lambda: self._client()._execute(query, variables))

    @property
    def _selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}

    def add_partition(self, partitions_def: str, key: str) -> None:
        data = self._execute(
            "addDynamicPartition",
            ADD_PARTITION,
            {"selector": self._selector, "name": partitions_def, "key": key},
        )["addDynamicPartition"]
        ok = ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError")
        if data["__typename"] not in ok:
            raise DagsterRefused(f"addDynamicPartition: {data.get('message', data)}")

    def runs_with_tags(self, tags: dict[str, str]) -> list[RunInfo]:
        """Every run carrying all of ``tags``, newest first."""
        data = self._execute(
            "runsOrError",
            RUNS_BY_TAGS,
            {"filter": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}},
        )["runsOrError"]
        if data["__typename"] != "Runs":
            raise DagsterRefused(f"runsOrError: {data.get('message', data)}")
        runs = [
            RunInfo(
                r["runId"],
                r["status"],
                float(r.get("creationTime") or 0),
                {t["key"]: t["value"] for t in r["tags"]},
            )
            for r in data["results"]
        ]
        return sorted(runs, key=lambda r: r.created, reverse=True)

    def launch(self, tags: dict[str, str], run_config: dict[str, Any] | None = None) -> str:
        """Launch ``monthly_composite_job`` with these tags; returns the run id.

        Sent as ``launchRun`` through the client's transport rather than
        ``submit_job_execution``, whose client-side tag check warns about the multi-partition
        tags (``dagster/partition/aoi``) that Dagster itself requires on partition runs.
        """
        params = {
            "selector": {**self._selector, "jobName": JOB_NAME},
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        data = self._execute("launchRun", LAUNCH_RUN, {"params": params})["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise DagsterRefused(f"launchRun {data['__typename']}: {data.get('message', '')}")
        return str(data["run"]["runId"])

    def status(self, run_id: str) -> str:
        try:
            return str(self._call("runStatus", self._client().get_run_status, run_id).value)
        except DagsterRefused as e:
            if "RunNotFoundError" in str(e) or "PipelineRunNotFoundError" in str(e):
                return "NOT_FOUND"
            raise
