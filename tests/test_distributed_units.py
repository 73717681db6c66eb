"""The distributed load's pure parts: command lines, lost workers, each worker's CPU."""

import pytest

import contract
from loadtests.distributed import (
    LoadHosts,
    master_options,
    missing_workers,
    saturated,
    worker_cpu,
)
from loadtests.summary import validity


def test_a_worker_runs_behind_its_hosts_prefix_with_its_host_named() -> None:
    hosts = LoadHosts(("a", "b"), "ssh -tt {host}", 2, "10.0.0.1")
    assert hosts.workers == 4 and hosts.placement() == ["a", "a", "b", "b"]
    cmd = hosts.worker_command(
        "b", "/venv/bin/python", "/lab/loadtests/locustfiles/chat.py", ("ChatUser",), 5557
    )
    assert cmd[:3] == ["ssh", "-tt", "b"]
    assert cmd[3:5] == ["env", "LAB_LOAD_HOST=b"]
    assert cmd[cmd.index("--master-host") + 1] == "10.0.0.1" and cmd[-1] == "5557"
    assert "ChatUser" in cmd and "--worker" in cmd


def test_the_master_expects_every_worker() -> None:
    flags = master_options(4, 5557)
    assert flags[flags.index("--expect-workers") + 1] == "4"
    assert flags[flags.index("--lab-workers") + 1] == "4"


@pytest.mark.parametrize(
    ("hosts", "prefix", "per", "says"),
    [
        ((), "ssh {host}", 1, "name at least one host"),
        (("a",), "ssh", 1, "no {host}"),
        (("a",), "ssh {host}", 0, ">= 1"),
    ],
)
def test_bad_load_hosts_are_refused(hosts: tuple, prefix: str, per: int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        LoadHosts(hosts, prefix, per)


def test_a_host_whose_worker_sent_no_rows_is_named() -> None:
    meta = {"workers": [{"host": "a"}, {"host": "b"}, {"host": "b"}]}
    assert missing_workers(meta, ["a", "b", "b"]) == ""
    reason = missing_workers({"workers": [{"host": "a"}]}, ["a", "b", "b"])
    assert reason.startswith("2 of 3 load workers sent no rows") and "b (2 of 2)" in reason
    assert missing_workers({}, ["a"]).startswith("1 of 1")


def test_each_workers_cpu_over_the_window() -> None:
    # 0.5 CPU-seconds per second: 50 % of a core; samples outside the window do not count.
    samples = [(t, 0.5 * t, 80.0) for t in (0.0, 1.0, 2.0, 3.0, 9.0)]
    hot = [(t, 0.95 * t, 99.0) for t in (0.0, 1.0, 2.0, 3.0)]
    cpu = worker_cpu(
        [{"host": "a", "worker_index": 0, "cpu_samples": samples, "rows": 10},
         {"host": "b", "worker_index": 1, "cpu_samples": hot, "rows": 9},
         {"host": "c", "worker_index": 2, "cpu_samples": [], "rows": 0}],
        1.0,
        3.0,
    )  # fmt: skip
    assert [c["cpu_pct"] for c in cpu] == [50.0, 95.0, None]
    assert cpu[0]["host_cpu_pct"] == 80.0
    # b's worker saturated its core, and b (a host that gave no boot id: not this machine) all
    # of its CPUs.
    assert saturated(cpu) == (
        "load host b (worker 1) at 95% of its core; load host b at 99% of its CPUs"
    )


def test_a_saturated_load_host_is_the_load_sides_fault_alone() -> None:
    hot = "load host b (worker 1) at 95% of its core"
    assert contract.load_side_only(hot)
    assert contract.load_side_only(f"load generator at 97% of its core; {hot}")
    assert not contract.load_side_only(f"{hot}; upstream at 95% of its core")


def test_with_load_hosts_the_workers_cpu_decides_and_not_this_load_core() -> None:
    # Busiest worker at 95%, named by saturated(): invalid for that reason alone.
    hot = "load host b (worker 1) at 95% of its core"
    assert validity(95.0, 60.0, 10, 10, True, load_hosts=hot) == (False, hot)
    # Locust's load core here is not the workers': no "load core" sum with the upstream.
    assert validity(60.0, 60.0, 10, 10, True, load_hosts="") == (True, "")
    assert validity(60.0, 60.0, 10, 10, True) == (False, "load core at 120% (Locust + upstream)")
    # No worker sent CPU samples: not measured, as for one local Locust.
    assert validity(None, None, 10, 10, True, load_hosts="")[1] == "load generator CPU not measured"


def test_a_load_host_of_its_own_is_judged_by_all_its_cpus_and_one_here_is_not() -> None:
    # Two workers at 60 % of their cores: on a machine of their own, at 95 % of its CPUs (other
    # work there, or the workers together) the host is saturated; on this machine (a network
    # namespace: the same boot id) the host's busy share includes the server and does not count.
    calm = [(t, 0.6 * t, 95.0) for t in (0.0, 1.0, 2.0, 3.0)]
    workers = [
        {"host": "far", "worker_index": 0, "cpu_samples": calm, "boot_id": "b-far", "rows": 5},
        {"host": "ns1", "worker_index": 1, "cpu_samples": calm, "boot_id": "b-here", "rows": 5},
    ]
    cpu = worker_cpu(workers, 1.0, 3.0, here="b-here")
    assert [(c["host_is_here"], c["host_cpu_pct"]) for c in cpu] == [(False, 95.0), (True, 95.0)]
    assert saturated(cpu) == "load host far at 95% of its CPUs"
    assert saturated(cpu[1:]) == ""
    # The master gathers every row: it too can be the load side's limit.
    assert saturated(cpu[1:], master_pct=97.0) == "Locust master at 97% of its core"
    for reason in (saturated(cpu), saturated(cpu[1:], master_pct=97.0)):
        assert contract.load_side_only(reason)
