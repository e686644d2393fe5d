"""Prompt-prefix refinement: the low-res mask of each recent (image, prompt set), fed back on the next click.

CVAT sends every click of an interaction each time: the points so far plus one new point. SAM's own
interactive demo (and CVAT's browser plugin) feeds the previous answer's low-resolution logits back as
`mask_input`; that is what makes click 3 better than click 1. The server-side equivalent: remember the low-res
mask of each (image, prompt set) for `ttl_s`, and when a request's prompts are a remembered set plus one
point, decode with that mask. A chain of such requests therefore equals the refinement chain in PyTorch
(`predict(clicks[:k+1], mask_input=low_res_k)`).

Prompt sets compare as multisets of (x, y, label) plus the box, so CVAT's order (positives, then negatives,
the new point inside either list) does not matter. Event-loop only; bounded in entries (256 KiB each).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .predictor import Prompts

PromptKey = tuple[tuple[float, float, float, float] | None, tuple[tuple[float, float, int], ...]]


def prompt_key(prompts: Prompts) -> PromptKey:
    """The order-independent identity of a prompt set."""
    clicks = sorted((x, y, label) for (x, y), label in zip(prompts.points, prompts.labels, strict=True))
    return prompts.box, tuple(clicks)


def prefixes(prompts: Prompts) -> list[Prompts]:
    """The prompt sets one click smaller, the last click first (CVAT appends the new click to its list)."""
    smaller = []
    for index in reversed(range(len(prompts.points))):
        rest = Prompts(
            points=prompts.points[:index] + prompts.points[index + 1 :],
            labels=prompts.labels[:index] + prompts.labels[index + 1 :],
            box=prompts.box,
        )
        if not rest.empty:
            smaller.append(rest)
    return smaller


@dataclass
class _Entry:
    low_res: np.ndarray
    expires: float


class RefinementStore:
    """Recent low-res masks by (image key, prompt set); `ttl_s == 0` or `max_entries == 0` disables it."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[tuple[str, PromptKey], _Entry] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, image_key: str, prompts: Prompts, low_res: np.ndarray) -> None:
        if not self.enabled:
            return
        now = self._clock()
        key = (image_key, prompt_key(prompts))
        self._items.pop(key, None)
        self._items[key] = _Entry(low_res, now + self.ttl_s)
        while len(self._items) > self.max_entries or next(iter(self._items.values())).expires <= now:
            self._items.popitem(last=False)

    def prior(self, image_key: str, prompts: Prompts) -> np.ndarray | None:
        """The remembered low-res mask of `prompts` minus one click, or None."""
        if not self.enabled:
            return None
        now = self._clock()
        for smaller in prefixes(prompts):
            key = (image_key, prompt_key(smaller))
            entry = self._items.get(key)
            if entry is None:
                continue
            if entry.expires <= now:
                del self._items[key]
                continue
            self._items.move_to_end(key)
            return entry.low_res
        return None
