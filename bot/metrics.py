"""A small Prometheus registry: counters, gauges and histograms with labels, text exposition."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

Labels = tuple[tuple[str, str], ...]


def _labels(values: dict[str, str]) -> Labels:
    return tuple(sorted(values.items()))


def _fmt_labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = [*labels, *extra]
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self.values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(_labels(labels), 0.0)

    def render(self) -> list[str]:
        return [f"{self.name}{_fmt_labels(k)} {_num(v)}" for k, v in sorted(self.values.items())]


class Gauge(Metric):
    kind = "gauge"

    def __init__(
        self, name: str, help_text: str, collect: Callable[[], dict[Labels, float]] | None = None
    ) -> None:
        super().__init__(name, help_text)
        self.values: dict[Labels, float] = {}
        self.collect = collect

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self.values[_labels(labels)] = value

    def render(self) -> list[str]:
        values = self.collect() if self.collect is not None else self.values
        return [f"{self.name}{_fmt_labels(k)} {_num(v)}" for k, v in sorted(values.items())]


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS):
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            counts, totals = self.series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            totals[0] += value

    def render(self) -> list[str]:
        lines = []
        for key, (counts, totals) in sorted(self.series.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                lines.append(
                    f"{self.name}_bucket{_fmt_labels(key, [('le', _num(bound))])} {running}"
                )
            lines.append(f"{self.name}_sum{_fmt_labels(key)} {_num(totals[0])}")
            lines.append(f"{self.name}_count{_fmt_labels(key)} {running}")
        return lines


class Registry:
    """Metrics by name; ``render`` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def counter(self, name: str, help_text: str) -> Counter:
        return self._add(Counter(name, help_text))  # type: ignore[return-value]

    def gauge(
        self, name: str, help_text: str, collect: Callable[[], dict[Labels, float]] | None = None
    ) -> Gauge:
        return self._add(Gauge(name, help_text, collect))  # type: ignore[return-value]

    def histogram(
        self, name: str, help_text: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))  # type: ignore[return-value]

    def _add(self, metric: Metric) -> Metric:
        existing = self.metrics.get(metric.name)
        if existing is not None:
            return existing
        self.metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.metrics.values():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
