"""Several hosts on one machine, for the distributed-load test and its committed run: Linux
network namespaces the lab makes itself, joined by a bridge on a private /24, torn down after.

`lab_network(["srv", "w1", "w2"])` yields a `Network`: each name is a namespace
(`<prefix>-<name>`, reached with `ip netns exec`), with a veth pair whose other end is on a
bridge in the caller's namespace, which holds the subnet's first address (where the Locust
master, run here, is reached). Only namespaces, links and the bridge this module created are
ever touched; they are removed on the way out, even after an error. Needs `ip` (iproute2) and
the right to create namespaces (root, or CAP_NET_ADMIN); `available()` says whether this
process has it.

`python -m loadtests.netns demo --out DIR` is the committed run of results/reference/distributed:
the `async` app in one namespace, two Locust workers in two others, one cell of `hello`.
"""

import argparse
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

IP = "ip"


class NetnsError(RuntimeError):
    """A namespace, link or address could not be made."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([IP, *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def available() -> str:
    """Why namespaces cannot be made here ("" when they can): tried, then removed."""
    name = f"labprobe-{secrets.token_hex(3)}"
    try:
        done = subprocess.run([IP, "netns", "add", name], capture_output=True, text=True)
    except OSError as exc:
        return f"no `ip` command: {exc}"
    if done.returncode != 0:
        return f"`ip netns add` failed: {done.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return ""


@dataclass
class Network:
    """The namespaces made, their addresses, and the bridge's (the caller's) address."""

    prefix: str
    bridge: str
    gateway: str
    hosts: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)

    def namespace(self, name: str) -> str:
        """The namespace of a host."""
        return f"{self.prefix}-{name}"

    def exec_prefix(self) -> str:
        """The command prefix that runs a command on a host (`--host-prefix`)."""
        return "ip netns exec {host}"

    def run(self, name: str) -> list[str]:
        """The command prefix of one host."""
        return [IP, "netns", "exec", self.namespace(name)]


@contextmanager
def lab_network(names: Sequence[str], third_octet: int | None = None) -> Iterator[Network]:
    """Namespaces for `names` on a bridge in 10.231.<n>.0/24, removed on the way out."""
    tag = secrets.token_hex(2)
    octet = third_octet if third_octet is not None else int(tag, 16) % 200 + 20
    net = Network(prefix=f"lab{tag}", bridge=f"lab{tag}br", gateway=f"10.231.{octet}.1")
    made: list[str] = []
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        net.links.append(net.bridge)
        _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        for i, name in enumerate(names, 2):
            ns = net.namespace(name)
            _ip("netns", "add", ns)
            made.append(ns)
            outside, inside = f"lab{tag}v{i}", f"lab{tag}p{i}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            net.links.append(outside)
            _ip("link", "set", outside, "master", net.bridge)
            _ip("link", "set", outside, "up")
            _ip("link", "set", inside, "netns", ns)
            address = f"10.231.{octet}.{i}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            net.hosts[name] = address
        yield net
    finally:
        for ns in made:
            _kill_namespace(ns)
            _ip("netns", "del", ns, check=False)
        for link in reversed(net.links):
            _ip("link", "del", link, check=False)


def _kill_namespace(ns: str) -> None:
    """SIGKILL whatever still runs in a namespace the lab made (nothing should)."""
    done = _ip("netns", "pids", ns, check=False)
    for pid in done.stdout.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def demo(out: Path, python: str = sys.executable) -> int:
    """The committed distributed run: `async` in `srv`, Locust workers in `w1` and `w2`."""
    from loadtests.cli import main as loadtests_main
    from loadtests.process import server_command, spawn, wait_healthy

    out.mkdir(parents=True, exist_ok=True)
    with lab_network(["srv", "w1", "w2"]) as net:
        server = net.hosts["srv"]
        cmd = [*net.run("srv"), *server_command("async", 8000, python, host=server)]
        with spawn(cmd, out / "server.log") as proc:
            wait_healthy(proc, f"http://{server}:8000/ready", 30)
            return loadtests_main(
                [
                    "--target", f"http://{server}:8000",
                    "--locust-hosts", f"{net.namespace('w1')},{net.namespace('w2')}",
                    "--host-prefix", net.exec_prefix(),
                    "--master-address", net.gateway,
                    "--scenarios", "hello", "--variants", "async", "--users", "40",
                    "--repeats", "1", "--duration", "3", "--warmup", "1",
                    "--out", str(out),
                ]
            )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m loadtests.netns demo --out DIR`."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.netns", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("demo", help="one cell of hello driven by two load hosts")
    run.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if why := available():
        print(f"error: {why}", file=sys.stderr)
        return 2
    return demo(args.out)


if __name__ == "__main__":
    sys.exit(main())
