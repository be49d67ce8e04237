"""Alert rules, evaluated by every worker every ``alert_evaluation_seconds`` over a sliding window.

Rules (thresholds are settings; a rule whose threshold or limit is unset is off):

- ``failure_rate`` per provider: the share (above ``alert_failure_rate``) of its calls that ended in the last
  ``alert_window_minutes`` that failed (neither ok nor a safety refusal), with at least
  ``alert_min_calls`` calls. Read from ``generation_attempts`` by ``started_at`` (indexed), only the
  window's rows: the rollups count by UTC day, far too coarse for a window of minutes.
- ``budget_daily`` / ``budget_monthly``, subject the level ("80%", "100%"): spending as the budget
  counts it (db/ledger.py) against ``alert_budget_warning`` and ``alert_budget_exhausted`` of a set budget.
- ``storage``: storage used — masters plus variants, as /metrics' ``blogimg_stored_bytes`` counts
  it (db/alert_measures.py; thumbnails are not counted) — against ``alert_storage_fraction`` of
  ``storage_limit_bytes``.
- ``processing_p95``: p95 imaging time of the images finished in the window (``finished_at``,
  indexed) over ``alert_processing_p95_ms``; ``provider_latency_p95`` per provider over
  ``alert_provider_latency_p95_ms``; both need ``alert_min_calls`` samples to fire.
- ``circuit_open`` per provider: its circuit is not closed in this worker (pipeline/breaker.py).
- ``queued_too_long``: a job has waited in the queue longer than ``alert_queued_minutes``.

An alert fires once when its condition starts and resolves once when it ends (db/alerts.py keeps
one row per episode; two workers evaluating at once cannot open it twice).

No flapping: hysteresis. A rule fires when its value passes the threshold and resolves only when
the value falls below the threshold less ``RESOLVE_MARGIN`` (10% of it); in between, nothing
changes. We chose hysteresis over a minimum firing duration because it needs no memory between
evaluations (every worker reaches the same verdict from the same numbers, whatever it saw before)
and because a value hovering at the threshold then changes nothing at all, where a minimum
duration still sends a firing/resolved pair every so often; an alert whose condition really ends
still resolves at the next evaluation. The circuit rule has no number: the worker that sees the
circuit open refreshes the alert's ``updated_at`` each evaluation, and it resolves only once no
worker has refreshed it for ``CIRCUIT_STALE_EVALUATIONS`` evaluations — so one worker's closed
circuit cannot resolve what another worker still sees open, an open → half-open → open cycle
does not flap, and a worker that dies does not leave its alert firing for ever.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from blogimg.config import Settings
from blogimg.db import alert_measures
from blogimg.db.alerts import AlertRecord, firing_alerts, open_alert, refresh_alert, resolve_alert
from blogimg.db.database import Database
from blogimg.db.engine import reader
from blogimg.db.failures import describe
from blogimg.db.ledger import spending
from blogimg.db.tables import utcnow
from blogimg.pipeline.breaker import BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

#: A firing alert resolves once its value is this share below the threshold (hysteresis).
RESOLVE_MARGIN = 0.1
#: Evaluations without a worker seeing the circuit open before its alert resolves.
CIRCUIT_STALE_EVALUATIONS = 2
#: Circuit states by provider, as this worker's chain has them (``circuit_states``).
CircuitReader = Callable[[], Mapping[str, str]]


class Verdict(enum.Enum):
    FIRE = "fire"  #: the condition holds: open the alert (or keep it)
    HOLD = "hold"  #: within the hysteresis band: leave the alert as it is
    CLEAR = "clear"  #: the condition is over: resolve the alert


@dataclass(frozen=True, slots=True)
class Reading:
    """What one rule says about one subject in one evaluation."""

    rule: str
    subject: str
    verdict: Verdict
    value: float | None
    threshold: float
    message: str


@dataclass(frozen=True, slots=True)
class AlertChanges:
    """The episodes one evaluation opened and closed."""

    fired: list[AlertRecord]
    resolved: list[AlertRecord]


def judge(value: float, threshold: float, *, may_fire: bool = True, above: bool = False) -> Verdict:
    """Hysteresis: fire at the threshold (or only ``above`` it), clear below it less the margin, hold between."""
    if may_fire and (value > threshold if above else value >= threshold):
        return Verdict.FIRE
    # Both sides rounded: a rate is a ratio of counts, and 0.2 × 0.9 is 0.18000000000000002 in
    # floating point, which cleared an alert at exactly 18% (9 of 50), on the margin, not below it.
    if round(value, 9) < round(threshold * (1 - RESOLVE_MARGIN), 9):
        return Verdict.CLEAR
    return Verdict.HOLD


def circuit_states(breakers: Mapping[str, CircuitBreaker]) -> CircuitReader:
    """A reader of the circuits of a chain's ``breakers``, read afresh at each evaluation."""

    def read() -> dict[str, str]:
        return {name: breaker.state.value for name, breaker in breakers.items()}

    return read


def _percent(share: float) -> str:
    return f"{share:.0%}"


class AlertEvaluator:
    """Evaluates every rule against the catalogue and opens or resolves alerts; ``run`` loops."""

    def __init__(self, database: Database, settings: Settings, circuits: CircuitReader | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.settings = settings
        self.circuits = circuits
        self.clock = clock

    async def run(self) -> None:
        """Evaluate every ``alert_evaluation_seconds`` until cancelled (the first after one interval:
        a worker starting up has nothing to say yet). A failed evaluation is logged and tried again."""
        interval = self.settings.alert_evaluation_seconds
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await self.evaluate()
            except Exception as error:  # the database may be away for a while: the next round tries again
                log.warning("alert evaluation failed: %s", describe(error))

    async def evaluate(self) -> AlertChanges:
        """One round: read every rule, then open, refresh or resolve each alert in its own transaction.

        The reads take no write lock (a quiet round writes nothing, so on SQLite it never queues
        behind the workers' writes); only a reading that changes an alert begins a write.
        """
        now = self.clock()
        async with reader(self.database.engine).connect() as connection:
            firing = {(alert.rule, alert.subject): alert for alert in await firing_alerts(connection)}
            readings = await self._readings(connection, now, firing)
        seen = {(reading.rule, reading.subject) for reading in readings}
        # A firing alert no rule spoke of has no data left in the window (no calls, no budget): over.
        readings += [Reading(alert.rule, alert.subject, Verdict.CLEAR, None, alert.threshold or 0.0,
                             f"{alert.message} — no longer measured") for key, alert in firing.items() if key not in seen]
        fired, resolved = [], []
        for reading in readings:
            alert = firing.get((reading.rule, reading.subject))
            if reading.verdict is Verdict.HOLD or (alert is None and reading.verdict is not Verdict.FIRE):
                continue  # nothing to open, refresh or resolve: no transaction at all
            async with self.database.engine.begin() as connection:
                if alert is None and reading.verdict is Verdict.FIRE:
                    if (opened := await open_alert(connection, reading.rule, reading.subject, value=reading.value,
                                                   threshold=reading.threshold, message=reading.message, now=now)):
                        fired.append(opened)
                elif alert is not None and reading.verdict is Verdict.CLEAR:
                    if (closed := await resolve_alert(connection, alert.id, value=reading.value,
                                                      message=reading.message, now=now)):
                        resolved.append(closed)
                elif alert is not None and reading.verdict is Verdict.FIRE:
                    await refresh_alert(connection, alert.id, value=reading.value, message=reading.message, now=now)
        for record in fired:
            log.warning("alert firing: %s", record.message)
        for record in resolved:
            log.warning("alert resolved: %s", record.message)
        return AlertChanges(fired, resolved)

    async def _readings(self, connection: AsyncConnection, now: datetime,
                        firing: Mapping[tuple[str, str], AlertRecord]) -> list[Reading]:
        settings = self.settings
        since = now - timedelta(minutes=settings.alert_window_minutes)
        readings: list[Reading] = []
        calls = await alert_measures.provider_calls(connection, since)
        readings += self._failure_rates(calls)
        if settings.alert_provider_latency_p95_ms is not None:
            readings += self._provider_latencies(calls, settings.alert_provider_latency_p95_ms)
        if settings.alert_processing_p95_ms is not None:
            readings += self._imaging_time(await alert_measures.imaging_times(connection, since),
                                           settings.alert_processing_p95_ms)
        readings += await self._budgets(connection, now)
        if settings.storage_limit_bytes is not None:
            readings.append(self._storage(await alert_measures.stored_bytes(connection), settings.storage_limit_bytes))
        wait = await alert_measures.queued_before(
            connection, now - timedelta(minutes=settings.alert_queued_minutes * (1 - RESOLVE_MARGIN)))
        readings.append(self._queue_wait(wait, now))
        readings += self._circuits(now, firing)
        return readings

    def _window(self) -> str:
        return f"the last {self.settings.alert_window_minutes:g} min"

    def _failure_rates(self, calls: Mapping[str, alert_measures.ProviderWindow]) -> list[Reading]:
        threshold, least = self.settings.alert_failure_rate, self.settings.alert_min_calls
        # No calls in the window is no reading: a firing alert then resolves (nothing is failing now).
        return [Reading("failure_rate", provider, judge(window.failure_rate, threshold, may_fire=window.calls >= least, above=True),
                        round(window.failure_rate, 4), threshold,
                        f"{provider}: {_percent(window.failure_rate)} of {window.calls} calls failed in "
                        f"{self._window()} (alert at {_percent(threshold)} of at least {least})")
                for provider, window in sorted(calls.items())]

    def _provider_latencies(self, calls: Mapping[str, alert_measures.ProviderWindow], threshold: float) -> list[Reading]:
        least, readings = self.settings.alert_min_calls, []
        for provider, window in sorted(calls.items()):
            p95 = alert_measures.percentile(window.latencies_ms, 95) or 0.0
            readings.append(Reading("provider_latency_p95", provider,
                                    judge(p95, threshold, may_fire=window.calls >= least, above=True), p95, threshold,
                                    f"{provider}: p95 latency {p95:.0f} ms over {window.calls} calls in "
                                    f"{self._window()} (alert at {threshold:.0f} ms)"))
        return readings

    def _imaging_time(self, times: list[int], threshold: float) -> list[Reading]:
        if not times:
            return []
        p95 = alert_measures.percentile(times, 95) or 0.0
        return [Reading("processing_p95", "", judge(p95, threshold, may_fire=len(times) >= self.settings.alert_min_calls,
                                                         above=True),
                        p95, threshold, f"p95 imaging time {p95:.0f} ms over {len(times)} images in "
                                        f"{self._window()} (alert at {threshold:.0f} ms)")]

    async def _budgets(self, connection: AsyncConnection, now: datetime) -> list[Reading]:
        settings = self.settings
        periods = [(rule, label, budget) for rule, label, budget in
                   (("budget_daily", "today", settings.budget_daily_usd),
                    ("budget_monthly", "this month", settings.budget_monthly_usd)) if budget]
        if not periods:
            return []
        # On the evaluation's connection: the same snapshot as the other readings, and no second connection.
        async with AsyncSession(bind=connection) as session:
            spent = await spending(session, now)
        readings = []
        for rule, label, budget in periods:
            amount = spent.today if rule == "budget_daily" else spent.this_month
            for level in sorted({settings.alert_budget_warning, settings.alert_budget_exhausted}):
                threshold = budget * level
                readings.append(Reading(rule, _percent(level), judge(amount, threshold), round(amount, 6), threshold,
                                        f"${amount:.2f} spent {label}: {_percent(amount / budget)} of the "
                                        f"${budget:.2f} budget (alert at {_percent(level)})"))
        return readings

    def _storage(self, used: int, limit: int) -> Reading:
        threshold = limit * self.settings.alert_storage_fraction
        return Reading("storage", "", judge(used, threshold), float(used), threshold,
                       f"stored images take {used:,} bytes, {_percent(used / limit)} of the {limit:,}-byte limit "
                       f"(alert at {_percent(self.settings.alert_storage_fraction)})")

    def _queue_wait(self, wait: alert_measures.QueueWait, now: datetime) -> Reading:
        threshold = self.settings.alert_queued_minutes
        minutes = (now - wait.oldest).total_seconds() / 60 if wait.oldest is not None else 0.0
        return Reading("queued_too_long", "", judge(minutes, threshold, above=True), round(minutes, 1), threshold,
                       f"{wait.jobs} job{'s' if wait.jobs != 1 else ''} queued for up to {minutes:.0f} min "
                       f"(alert at {threshold:g} min)" if wait.jobs else "no job has waited long in the queue")

    def _circuits(self, now: datetime, firing: Mapping[tuple[str, str], AlertRecord]) -> list[Reading]:
        states = dict(self.circuits()) if self.circuits is not None else {}
        stale_before = now - timedelta(seconds=CIRCUIT_STALE_EVALUATIONS * self.settings.alert_evaluation_seconds)
        readings = [Reading("circuit_open", provider, Verdict.FIRE, 1.0, 1.0,
                            f"{provider}: circuit {state} in a worker; calls go to the next provider")
                    for provider, state in sorted(states.items()) if state != BreakerState.CLOSED]
        open_here = {reading.subject for reading in readings}
        for (rule, subject), alert in firing.items():
            if rule == "circuit_open" and subject not in open_here:
                stale = alert.updated_at < stale_before  # no worker has seen it open lately
                readings.append(Reading(rule, subject, Verdict.CLEAR if stale else Verdict.HOLD, 0.0, 1.0,
                                        f"{subject}: circuit closed again"))
        return readings
