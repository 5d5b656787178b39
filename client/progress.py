"""Progress of a transfer (upload, download) on the terminal.

tqdm draws it: size, speed and time left, redrawn at most twice a second however small
the chunks are. When stderr is not a terminal (CI logs, pipes) there is no progress at all,
only the command's result lines. tqdm is imported only for a terminal (it costs ~25 ms).
"""
from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

REDRAW_SECONDS = 0.5


class Progress:
    """``with Progress("uploading x.whl", total) as p: p.update_to(done)``."""

    def __init__(self, label: str, total: int | None) -> None:
        self._bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                             mininterval=REDRAW_SECONDS, leave=False, file=sys.stderr, dynamic_ncols=True)

    def update_to(self, done: int) -> None:
        if self._bar is not None and done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
