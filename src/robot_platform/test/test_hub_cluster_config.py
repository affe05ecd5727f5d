"""Clustered hub configs (site_setup/nats_config.py HubCluster) and the jobs store's replication rows
(jobs/store.py ``on_change`` / ``replace_all``, what jobs/ha.py writes to and rebuilds from KV)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from robot_platform.jobs.service import JobsService
from robot_platform.jobs.store import JobStore
from robot_platform.site_setup.nats_config import (
    Endpoint,
    Fleet,
    HubCluster,
    HubNode,
    main,
    render_hub,
    render_robot,
    service_user_entry,
)

FLEET = Fleet({"r1": "a" * 20, "r2": "b" * 20}, "c" * 20)


def cluster() -> HubCluster:
    return HubCluster.local([4001, 4002, 4003], [7001, 7002, 7003], [6001, 6002, 6003], [8001, 8002, 8003])


def test_every_node_has_the_single_hubs_users_and_a_route_to_each_other() -> None:
    c = cluster()
    extra = [service_user_entry("jobs", "j" * 20)]
    single = render_hub(FLEET, Endpoint(port=4001), 7001, "/js", extra_users=extra)
    users = single[single.index("accounts {") : single.index("leafnodes")]
    for i, node in enumerate(c.nodes):
        text = render_hub(FLEET, Endpoint(), 0, "/js", extra_users=extra, cluster=c, node=node.name)
        assert text[text.index("accounts {") : text.index("leafnodes")] == users  # identical users/permissions
        assert f"server_name: hub-{i}\n" in text and f"listen: 127.0.0.1:{4001 + i}\n" in text
        assert f"leafnodes {{ listen: 127.0.0.1:{7001 + i}, no_advertise: true," in text
        assert f"listen: 127.0.0.1:{6001 + i}\n" in text and "name: control_hub" in text
        routes = [f"nats-route://route:{c.route_password}@127.0.0.1:{6001 + j}" for j in range(3) if j != i]
        assert f'routes: ["{routes[0]}", "{routes[1]}"]' in text
        assert f'authorization {{ user: route, password: "{c.route_password}" }}' in text


def test_robot_lists_every_node() -> None:
    c = cluster()
    text = render_robot("r1", "a" * 20, Endpoint(port=4222), c.leaf_addresses(), "/js")
    urls = ", ".join(f'"nats-leaf://r1:{"a" * 20}@127.0.0.1:{p}"' for p in (7001, 7002, 7003))
    assert f"remotes [ {{ urls: [{urls}] }} ]" in text
    assert c.client_urls() == "nats://127.0.0.1:4001,nats://127.0.0.1:4002,nats://127.0.0.1:4003"


@pytest.mark.parametrize(
    "nodes, message",
    [
        (2, "at least 3 nodes"),
        (3, "unique"),
    ],
)
def test_bad_clusters_are_refused(nodes: int, message: str) -> None:
    same = [HubNode("hub-0" if message == "unique" else f"hub-{i}", Endpoint(port=i + 1), 10 + i, 20 + i)
            for i in range(nodes)]  # fmt: skip
    with pytest.raises(ValueError, match=message):
        render_hub(FLEET, Endpoint(), 0, "/js", cluster=HubCluster(tuple(same), "r" * 20), node="hub-0")


def test_cli_renders_three_nodes_that_nats_server_accepts(tmp_path: Path) -> None:
    main(["--robots", "r1", "--out", str(tmp_path), "--cluster-hosts", "127.0.0.1,127.0.0.1,127.0.0.1",
          "--service-users", "--store-dir", str(tmp_path / "store")])  # fmt: skip
    confs = sorted(p.name for p in tmp_path.glob("hub-*.conf"))
    assert confs == ["hub-0.conf", "hub-1.conf", "hub-2.conf"]
    assert not (tmp_path / "hub.conf").exists()
    assert "127.0.0.1:7424" in (tmp_path / "r1.conf").read_text()  # ports offset on a shared host
    assert (tmp_path / "hub-urls").read_text().count("nats://") == 3
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH"
    for name in confs:
        result = subprocess.run([exe, "-t", "-c", str(tmp_path / name)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr + result.stdout


def test_store_changes_replicate_and_rebuild_the_same_store(tmp_path: Path) -> None:
    """What the active writes to KV (on_change, last value per key) rebuilds an identical store elsewhere."""
    replica: dict[str, bytes] = {}
    store = JobStore(tmp_path / "a.sqlite3")
    store.on_change = lambda items: replica.update(items)
    service = JobsService(store, lambda t, b: None, lambda e: None, lambda: 1_700_000_000.0)
    doc = {"operation": "deploy", "package_name": "p", "version": "1.0.0"}
    service.create({"job_id": "j-1_x", "document": doc, "targets": ["r1", "r2"]})
    service.cancel("j-1_x")
    assert set(replica) == set(dict(store.all_rows()))
    other = JobStore(tmp_path / "b.sqlite3")
    other.replace_all(list(replica.items()))
    assert other.job("j-1_x") == store.job("j-1_x")
    assert other.executions("j-1_x") == store.executions("j-1_x")
    assert [json.loads(v) for _, v in sorted(other.all_rows())] == [json.loads(v) for _, v in sorted(replica.items())]


def test_a_rolled_back_transaction_replicates_nothing(tmp_path: Path) -> None:
    changes: list[list[tuple[str, bytes]]] = []
    store = JobStore(tmp_path / "a.sqlite3")
    store.on_change = changes.append
    service = JobsService(store, lambda t, b: None, lambda e: None, lambda: 1_700_000_000.0)
    service.create({"job_id": "j1", "document": {"operation": "x"}, "targets": ["r1"]})
    before = len(changes)
    job = store.job("j1")
    with pytest.raises(RuntimeError), store.transaction():
        store.save_job(job)
        raise RuntimeError("abort")
    assert len(changes) == before
