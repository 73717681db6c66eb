"""The scenarios the lab can run: which locustfile and user classes each one uses.

Plain data, no Locust import: importing locust monkey-patches the orchestrator with gevent.
"""

from dataclasses import dataclass
from pathlib import Path

import contract

LOCUSTFILES = Path(__file__).parent / "locustfiles"


@dataclass(frozen=True)
class Scenario:
    """One scenario: a locustfile, its user classes and whether it goes through the upstream."""

    name: str
    locustfile: str
    user_classes: tuple[str, ...]
    proxy: bool = False
    # Users added on top of the cell's level (mixed: the one /hello probe user).
    extra_users: int = 0

    @property
    def path(self) -> Path:
        """Absolute path of the locustfile."""
        return LOCUSTFILES / self.locustfile


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("hello", "hello.py", ("HelloUser",)),
        Scenario("chat", "chat.py", ("ChatUser",), proxy=True),
        Scenario("chat_stream", "chat.py", ("ChatStreamUser",), proxy=True),
        Scenario("items_read", "items.py", ("ItemsReadUser",)),
        Scenario("items_write", "items.py", ("ItemsWriteUser",)),
        Scenario("items_wait", "items.py", ("ItemsWaitUser",)),
        Scenario("cpu", "cpu.py", ("CpuUser",)),
        Scenario("mixed", "mixed.py", ("HeavyChatUser", "ProbeUser"), proxy=True, extra_users=1),
        Scenario("chat_abandon", "abandon.py", ("AbandonChatUser",), proxy=True),
    )
}
# The contract names the scenarios; this table says how each one runs.
if tuple(SCENARIOS) != contract.SCENARIOS:
    raise RuntimeError(f"loadtests.scenarios {list(SCENARIOS)} != contract {contract.SCENARIOS}")
