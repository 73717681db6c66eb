"""The mock upstream's latency and fault model: pure, seeded, no I/O."""

import random
from dataclasses import dataclass

from servers.settings import Fault

_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "and", "runs")


@dataclass(frozen=True)
class LatencyModel:
    """Time to first token, then a fixed gap per further token, each optionally jittered."""

    ttft_ms: float
    itl_ms: float
    jitter: float = 0.0

    def _draw(self, ms: float, rng: random.Random) -> float:
        if self.jitter == 0.0:
            return ms / 1000
        return ms * rng.uniform(1 - self.jitter, 1 + self.jitter) / 1000

    def delays(self, tokens: int, rng: random.Random) -> list[float]:
        """Seconds to wait before each of `tokens` tokens: the TTFT, then inter-token gaps."""
        if tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {tokens}")
        return [self._draw(self.ttft_ms, rng)] + [
            self._draw(self.itl_ms, rng) for _ in range(tokens - 1)
        ]

    def total_s(self, tokens: int) -> float:
        """Expected latency of a non-streaming reply: TTFT + ITL x (tokens - 1)."""
        return (self.ttft_ms + self.itl_ms * (tokens - 1)) / 1000


def choose_fault(fault: Fault, rate: float, rng: random.Random) -> Fault:
    """The fault this request gets: `fault` with probability `rate`, else none."""
    if fault == "none" or rate <= 0.0:
        return "none"
    return fault if rate >= 1.0 or rng.random() < rate else "none"


def token_text(index: int, chars: int = 0) -> str:
    """The deterministic text of the index-th generated token, its word repeated to `chars`
    characters when asked (`x-mock-token-chars`: long streams for the backpressure test)."""
    word = _WORDS[index % len(_WORDS)]
    if len(word) < chars:
        word = (word * (chars // len(word) + 1))[:chars]
    return word if index == 0 else " " + word


def count_prompt_tokens(messages: list[dict]) -> int:
    """A cheap stand-in for a tokenizer: whitespace-separated words in string contents."""
    return sum(len(m["content"].split()) for m in messages if isinstance(m.get("content"), str))
