"""One progress line for long work: count, rate, ETA and any figures the caller adds.

On a terminal the line is redrawn in place; otherwise (CI logs, files) a line is printed at most
every `every` seconds, so logs stay short.
"""
import sys
import time
from typing import Optional, TextIO


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    def __init__(self, total: int, what: str, unit: str = "it", start: int = 0, every: float = 10.0,
                 stream: Optional[TextIO] = None, enabled: bool = True):  # fmt: skip
        self.total, self.what, self.unit, self.start, self.done = total, what, unit, start, start
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.t0 = self.last = time.perf_counter()

    def rate(self) -> float:
        return (self.done - self.start) / max(time.perf_counter() - self.t0, 1e-9)

    def update(self, done: int, extra: str = "") -> None:
        self.done = done
        now = time.perf_counter()
        if not self.enabled or (now - self.last < self.every and done < self.total):
            return
        self.last = now
        rate = self.rate()
        eta = (self.total - done) / rate if rate > 0 else 0.0
        line = f"{self.what}: {done}/{self.total} {self.unit}, {rate:.2f} {self.unit}/s, ETA {_duration(eta)}"
        line += f"  {extra}" if extra else ""
        end = "\n" if not self.tty or done >= self.total else ""
        print(("\r\033[K" if self.tty else "") + line, end=end, file=self.stream, flush=True)
