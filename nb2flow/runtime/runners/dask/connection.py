"""The runner's link to a Dask cluster: which client it uses (given, default, or one it opens
on a cluster or a LocalCluster it starts), and the event topic the workers stream through."""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

from nb2flow.errors import Nb2flowError
from nb2flow.runtime.core.tracebacks import error_line
from nb2flow.runtime.runners.dask.worker import TOPIC

# Events of every runner on a client arrive through one subscription; routed by token.
_routes: dict[str, queue.SimpleQueue[Any]] = {}
_subscriptions: dict[str, int] = {}
_routes_lock = threading.Lock()


def import_distributed() -> Any:
    """The ``distributed`` module, or a clear error saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise Nb2flowError(
            f"the dask task runner needs the 'distributed' package ({error_line(exc)}); "
            "install it with: pip install 'nb2flow[dask]'"
        ) from None
    return distributed


def _address(option: str) -> str:
    return option if "://" in option else f"tcp://{option}"


def _default_client() -> Any:
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return None
    return client if client.status == "running" else None


#: where the LocalCluster nb2flow starts listens (scheduler, nannies, workers, dashboard)
#: unless ``cluster_kwargs`` say otherwise: this machine only
LOOPBACK = "127.0.0.1"


def local_cluster_kwargs(given: dict[str, Any]) -> dict[str, Any]:
    """The LocalCluster arguments: worker processes, everything bound to ``host``
    (:data:`LOOPBACK` unless given), the dashboard on a free port of that host (8787 may
    be another cluster's; the run's first log line gives the address), then ``given``."""
    host = given.get("host") or LOOPBACK
    # Dask binds a dashboard given as ":port" to every interface, whatever ``host`` is
    dashboard_host = host.rpartition("://")[2]
    return {"processes": True, "host": host, "dashboard_address": f"{dashboard_host}:0", **given}


class Connection:
    """Where a runner's task runs go: ``client`` (connected, used as is), ``cluster`` (any
    Dask cluster object), ``address`` (an existing scheduler), ``n_workers`` (a LocalCluster
    of that many processes) or none of them (the process's default client, else a
    LocalCluster sized to the machine). What it opens it closes; what it is given it
    leaves running."""

    def __init__(
        self,
        *,
        address: str | None = None,
        cluster: Any = None,
        client: Any = None,
        n_workers: int | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.address = _address(address) if address else None
        self.cluster = cluster
        self.client = client
        self.n_workers = n_workers
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.connect_timeout = connect_timeout
        #: the client of the flow runs now running (None between runs)
        self.active: Any = None
        self._own_client: Any = None
        self._own_cluster: Any = None

    def describe(self) -> str:
        if self.address:
            return f"dask:{self.address}"
        if self.n_workers:
            return f"dask:{self.n_workers}"
        client = self.active or self.client
        if client is not None:
            return f"dask:{client.scheduler.address}"
        if self.cluster is not None:
            return f"dask:{self.cluster.scheduler_address}"
        return "dask"

    def open(self) -> Any:
        """Connect (starting a LocalCluster if that is the choice); return the client."""
        distributed = import_distributed()
        timeout = self.connect_timeout
        if timeout is None:
            import dask

            timeout = dask.config.get("distributed.comm.timeouts.connect")
        where = f"the Dask scheduler at {self.address}"
        try:
            if self.client is not None:
                client = self.client
            elif self.cluster is not None:
                where = f"the Dask scheduler at {getattr(self.cluster, 'scheduler_address', '?')}"
                client = self._own_client = distributed.Client(
                    self.cluster, set_as_default=False, timeout=timeout
                )
            elif self.address is not None:
                client = self._own_client = distributed.Client(
                    self.address, set_as_default=False, timeout=timeout
                )
            else:
                client = _default_client() if self.n_workers is None else None
                if client is None:
                    where = "a Dask LocalCluster (could not start it)"
                    kwargs = local_cluster_kwargs(self.cluster_kwargs)
                    if self.n_workers is not None:
                        kwargs.setdefault("n_workers", self.n_workers)
                        kwargs.setdefault("threads_per_worker", 1)
                    cluster = self._own_cluster = distributed.LocalCluster(**kwargs)
                    where = f"the Dask scheduler at {cluster.scheduler_address}"
                    client = self._own_client = distributed.Client(
                        cluster, set_as_default=False, timeout=timeout
                    )
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, CommClosedError...
            self.close()
            raise Nb2flowError(f"cannot reach {where}: {error_line(exc)}") from None
        self.active = client
        return client

    def close(self) -> None:
        """Close the client and cluster this connection opened (never fails)."""
        client, cluster = self._own_client, self._own_cluster
        self._own_client = self._own_cluster = None
        self.active = None
        for obj in (client, cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - closing must not fail the run
                    pass

    def scheduler_id(self) -> str:
        """The scheduler's id (not its address: a later cluster may get the same port)."""
        client = self.active
        return str(client.scheduler_info(n_workers=0).get("id") or client.scheduler.address)


def _on_event(event: Any) -> None:
    # runs in the client's event loop: route, nothing more
    try:
        _ts, (token, trid, kind, a, b) = event
    except (TypeError, ValueError):  # someone else's message on the topic
        return
    q = _routes.get(token)
    if q is not None:
        q.put((trid, kind, a, b))


def route_events(client: Any, token: str, into: queue.SimpleQueue[Any]) -> None:
    """Put the messages workers log on :data:`TOPIC` with ``token`` into ``into`` as
    ``(task run id, kind, a, b)`` (one topic subscription per client, shared)."""
    with _routes_lock:
        _routes[token] = into
        if _subscriptions.get(client.id, 0) == 0:
            client.subscribe_topic(TOPIC, _on_event)
        _subscriptions[client.id] = _subscriptions.get(client.id, 0) + 1


def unroute_events(client: Any, token: str) -> None:
    """Stop routing ``token``; the last runner on a client unsubscribes from the topic."""
    with _routes_lock:
        _routes.pop(token, None)
        n = _subscriptions.get(client.id, 0) - 1
        _subscriptions[client.id] = max(n, 0)
        if n <= 0 and client.status == "running":
            try:
                client.unsubscribe_topic(TOPIC)
            except Exception:  # noqa: BLE001
                pass
