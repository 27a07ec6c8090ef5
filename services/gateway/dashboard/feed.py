"""The figures behind ``GET /dashboard/data``: one collector sample per refresh, the rates taken
against the previous one, so a browser polling every second costs one look at the system a
second, however many are open (a refresh within ``min_interval`` of the last gets its figures).
The collector blocks (Kafka admin, PostgreSQL, HTTP scrapes): it runs on a worker thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from services.common.collector import PROJECTED, Collector
from services.common.figures import Sample, figures


class Feed:
    def __init__(
        self,
        make_collector: Callable[[], Collector],
        *,
        min_interval: float = 0.5,
        stale: float = 5.0,
        first_gap: float = 0.5,
    ) -> None:
        self._make = make_collector
        self._collector: Collector | None = None
        self.min_interval = min_interval  # refreshes closer than this share one sample
        self.stale = stale  # a previous sample older than this is too old to take rates against
        self.first_gap = first_gap  # without a fresh previous sample: two this far apart
        self._last: Sample | None = None
        self._figures: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def figures(self) -> dict[str, Any]:
        async with self._lock:
            last = self._last
            fresh = last is not None and time.monotonic() - last.at < self.min_interval
            if fresh and self._figures is not None:
                return self._figures
            if last is None or time.monotonic() - last.at > self.stale:
                last = await self._sample()
                await asyncio.sleep(self.first_gap)
            now = await self._sample()
            self._last, self._figures = now, figures(last, now, PROJECTED)
            return self._figures

    async def _sample(self) -> Sample:
        return await asyncio.to_thread(self._sample_blocking)

    def _sample_blocking(self) -> Sample:
        if self._collector is None:
            self._collector = self._make()
        return self._collector.sample()

    def close(self) -> None:
        if self._collector is not None:
            self._collector.close()
