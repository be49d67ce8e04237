"""/metrics in the Prometheus text format, made with prometheus-client from the catalogue.

A :class:`CatalogueCollector` is built per scrape over a :class:`MetricsSnapshot` read from the
database at that moment (db/metrics_snapshot.py), and registered in a registry of its own. No
number lives in a process's memory, so the answer is multi-process and multi-node safe by
construction: every API node says the same, and each worker process, on any machine, is counted
once (prometheus-client's own multiprocess mode, files in a shared directory, would cover only
the processes of one machine).

Histograms come from the rollups' latency buckets (eight per doubling, db/rollups.py), re-bucketed
to the coarser ``le`` bounds of :data:`CALL_BOUNDS_MS` and :data:`IMAGING_BOUNDS_MS`. Each ``le``
is a rollup bucket's exact upper bound (the nearest one below the round number aimed at), so the
cumulative counts are exact; ``+Inf`` is the count. A call's histogram ``_sum`` is approximated by
counting each call at its bucket's upper bound (at most ~9% above the true sum); imaging's ``_sum``
is exact (the triggers add the milliseconds).

Counters here are sums over rows that a deletion can take away (deleting an image deletes its
calls), so one may go down; Prometheus reads that as a counter reset.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from blogimg.db.metric_counts import stored_by_format
from blogimg.db.metrics_snapshot import MetricsSnapshot
from blogimg.domain import Status

#: Round numbers the ``le`` bounds aim at, in ms (each becomes the rollup bound at or just below it).
CALL_BOUNDS_MS = (250, 500, 1000, 2500, 5000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000)
IMAGING_BOUNDS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
CIRCUIT_STATES = ("closed", "open", "half-open", "paused")
WEBHOOK_STATUSES = ("pending", "failed")  #: outbox rows now; delivered ones are a counter
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition_bounds(fine_bounds: Sequence[int], aimed: Sequence[int]) -> list[int]:
    """For each aimed-at bound, the largest rollup bound not above it (duplicates dropped)."""
    chosen: list[int] = []
    ordered = sorted(bound for bound in fine_bounds if bound > 0)
    for target in aimed:
        index = bisect_right(ordered, target) - 1
        if index >= 0 and (not chosen or ordered[index] > chosen[-1]):
            chosen.append(ordered[index])
    return chosen


def cumulative(counts_by_upper_ms: Mapping[float, int], bounds_ms: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus buckets [(le in seconds, count ≤ le)…, ("+Inf", all)] from {upper bound ms: count}."""
    buckets = []
    for bound in bounds_ms:
        buckets.append((_seconds(bound), float(sum(count for upper, count in counts_by_upper_ms.items()
                                                   if upper <= bound))))
    buckets.append(("+Inf", float(sum(counts_by_upper_ms.values()))))
    return buckets


class CatalogueCollector(Collector):
    """Yields every blogimg series from one snapshot of the catalogue."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._provider_calls()
        yield from self._queue()
        yield from self._budget()
        yield from self._circuits()
        yield from self._storage()
        yield self._imaging()
        yield from self._webhooks()
        yield self._alerts()

    def _provider_calls(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        bounds = exposition_bounds(snapshot.latency_bounds_ms, CALL_BOUNDS_MS)
        latency = HistogramMetricFamily(
            "blogimg_provider_call_duration_seconds",
            "Provider call latency of calls that ended (from the rollups; _sum counts each call at its "
            "fine bucket's upper bound).", labels=["provider", "model"])
        for (provider, model), buckets in sorted(snapshot.call_latency.items()):
            by_upper: dict[float, int] = {}
            for bucket, count in buckets.items():
                upper = snapshot.latency_bounds_ms[bucket]
                by_upper[upper] = by_upper.get(upper, 0) + count
            approximate_sum = sum(upper * count for upper, count in by_upper.items()) / 1000
            latency.add_metric([provider, model], cumulative(by_upper, bounds), approximate_sum)
        yield latency
        calls = CounterMetricFamily("blogimg_provider_calls", "Provider calls by outcome (pending: still running).",
                                    labels=["provider", "model", "outcome"])
        cost = CounterMetricFamily("blogimg_provider_cost_usd", "Known cost of provider calls, US dollars.",
                                   labels=["provider", "model"])
        unknown = CounterMetricFamily("blogimg_provider_unknown_cost_calls",
                                      "Provider calls whose price is unknown (not in the cost).",
                                      labels=["provider", "model"])
        by_model: dict[tuple[str, str], list[float]] = {}
        for (provider, model, outcome), totals in sorted(snapshot.calls.items()):
            calls.add_metric([provider, model, outcome], totals.calls)
            summed = by_model.setdefault((provider, model), [0.0, 0])
            summed[0] += totals.cost_usd
            summed[1] += totals.unknown_cost_calls
        for (provider, model), (known, unknown_calls) in sorted(by_model.items()):
            cost.add_metric([provider, model], round(known, 6))
            unknown.add_metric([provider, model], unknown_calls)
        yield from (calls, cost, unknown)

    def _queue(self) -> Iterator[Metric]:
        images = GaugeMetricFamily("blogimg_images", "Images by status: queued and running are the queue's depth.",
                                   labels=["status"])
        for status in Status:
            images.add_metric([status.value], self.snapshot.images.get(status, 0))
        yield images
        yield GaugeMetricFamily("blogimg_queue_oldest_age_seconds",
                                "Seconds since the longest-waiting queued image was queued (0: none queued).",
                                value=round(self.snapshot.oldest_queued_seconds, 3))

    def _budget(self) -> Iterator[Metric]:
        """Spend as the budget counts it, and the configured limits (only those set), for the alerting rules."""
        snapshot, limits = self.snapshot, self.snapshot.limits
        yield GaugeMetricFamily("blogimg_spent_today_usd", "Spent or reserved today (UTC day), as the daily budget "
                                "counts it, US dollars.", value=round(snapshot.spent_today_usd, 6))
        yield GaugeMetricFamily("blogimg_spent_this_month_usd", "Spent or reserved this UTC month, as the monthly "
                                "budget counts it, US dollars.", value=round(snapshot.spent_this_month_usd, 6))
        for name, limit, text in (("blogimg_budget_daily_usd", limits.budget_daily_usd, "BLOGIMG_BUDGET_DAILY_USD"),
                                  ("blogimg_budget_monthly_usd", limits.budget_monthly_usd, "BLOGIMG_BUDGET_MONTHLY_USD"),
                                  ("blogimg_storage_limit_bytes", limits.storage_limit_bytes,
                                   "BLOGIMG_STORAGE_LIMIT_BYTES")):
            if limit is not None:
                yield GaugeMetricFamily(name, f"The configured {text}.", value=limit)

    def _circuits(self) -> Iterator[Metric]:
        circuits = GaugeMetricFamily(
            "blogimg_circuit_workers",
            "Live worker processes whose circuit breaker for a provider is in each state (each worker has its own).",
            labels=["provider", "state"])
        providers = sorted({provider for provider, _ in self.snapshot.circuits})
        for provider in providers:
            for state in CIRCUIT_STATES:
                circuits.add_metric([provider, state], self.snapshot.circuits.get((provider, state), 0))
        yield circuits

    def _storage(self) -> Iterator[Metric]:
        stored = stored_by_format(self.snapshot.counts)
        size = GaugeMetricFamily("blogimg_stored_bytes", "Bytes of stored images by format: masters as format "
                                 "'master', variants by theirs (thumbnails not counted).", labels=["format"])
        files = GaugeMetricFamily("blogimg_stored_files", "Stored masters ('master') and variants by format.",
                                  labels=["format"])
        for image_format, count in sorted(stored.items()):
            size.add_metric([image_format], count.total)
            files.add_metric([image_format], count.count)
        yield from (size, files)

    def _imaging(self) -> Metric:
        observed = self.snapshot.counts.get("imaging_ms", {})
        by_upper = {float(label): count.count for label, count in observed.items()}
        imaging = HistogramMetricFamily("blogimg_imaging_duration_seconds",
                                        "Time to decode, optimize and encode each succeeded image (exact _sum).")
        bounds = exposition_bounds(self.snapshot.latency_bounds_ms, IMAGING_BOUNDS_MS)
        imaging.add_metric([], cumulative(by_upper, bounds), sum(count.total for count in observed.values()) / 1000)
        return imaging

    def _webhooks(self) -> Iterator[Metric]:
        deliveries = GaugeMetricFamily("blogimg_webhook_deliveries", "Webhook deliveries in the outbox still "
                                       "pending or given up (failed), by status.", labels=["status"])
        for status in sorted({*WEBHOOK_STATUSES, *self.snapshot.webhook_deliveries}):
            deliveries.add_metric([status], self.snapshot.webhook_deliveries.get(status, 0))
        yield deliveries
        yield CounterMetricFamily("blogimg_webhook_deliveries_delivered", "Webhook deliveries delivered, all time.",
                                  value=self.snapshot.webhook_delivered)
        yield GaugeMetricFamily("blogimg_webhook_deliveries_retrying",
                                "Pending webhook deliveries that have failed at least once.",
                                value=self.snapshot.webhook_retrying)

    def _alerts(self) -> Metric:
        firing = GaugeMetricFamily("blogimg_alerts_firing", "Alerts firing now, by rule (blogimg's own rules).",
                                   labels=["rule"])
        for rule, count in sorted(self.snapshot.alerts_firing.items()):
            firing.add_metric([rule], count)
        return firing


def render(snapshot: MetricsSnapshot) -> bytes:
    """The Prometheus text exposition of ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogueCollector(snapshot))
    return generate_latest(registry)


def _seconds(milliseconds: float) -> str:
    return f"{milliseconds / 1000:g}"
