"""Scale to zero: the gateway puts idle SamModels to sleep and wakes them on the next invocation.

Only SamModels with ``spec.autoscaling.enabled`` and ``minReplicas: 0`` take part (``Function.autoscaling``).

- **Sleep** (provider hpa): a model that has served for ``quietPeriodSeconds`` without an invocation (time without
  a ready replica does not count: a model still loading is not idle) gets ``spec.replicas: 0``
  through the scale subresource. Before that the gateway reads the replicas' own request counters
  (``sam_inference_requests_total`` of the invoke/embeddings/masks endpoints): if they moved since its last look,
  someone else (another gateway replica, a direct client) is using the model and the quiet period starts again.
  The HPA, whose target now has 0 replicas, goes inactive (``ScalingActive=False``, ``ScalingDisabled``).
- **Wake**: an invocation of a function with no ready replica is held. For provider hpa the gateway sets
  ``spec.replicas: 1`` (once, however many invocations wait); for provider keda KEDA scales from 0 itself, on the
  gateway's ``sam_gateway_held_invocations`` and request counters. The held invocation is forwarded as soon as a
  replica is Ready; if none is within ``wake_timeout_s`` it is answered 503 with ``Retry-After``.

Each wake and sleep is counted (``sam_gateway_wakes_total{function,reason}``, ``sam_gateway_sleeps_total``), timed
(``sam_gateway_wake_duration_seconds``) and recorded as an Event on the SamModel (reasons ``WokenUp``,
``ScaledToZero``), which ``kubectl describe sam`` shows; the operator's Ready condition says ``ScaledToZero`` or
``WakingUp`` meanwhile, and keeps the function listed to CVAT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

from sam_gateway.catalog import Catalog, Function, ObjectKey
from sam_gateway.metrics import GatewayMetrics
from sam_gateway.proxy import InvocationError

log = logging.getLogger(__name__)

#: Encoder endpoints that are work (probes and scrapes are not).
WORK_ENDPOINTS = frozenset({"invoke", "embeddings", "masks"})
Clock = Callable[[], float]
Fetch = Callable[[str], Awaitable[str]]  # replica address -> its /metrics text


class Scaler(Protocol):
    """Writes the gateway makes to the API: the scale subresource and an Event on the SamModel."""

    async def set_replicas(self, namespace: str, name: str, replicas: int) -> None: ...

    async def record_event(self, function: Function, reason: str, message: str) -> None: ...


def work_requests(metrics_text: str) -> float:
    """Requests an encoder has served (work endpoints only), from its /metrics exposition."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "sam_inference_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("endpoint") in WORK_ENDPOINTS:
                total += sample.value
    return total


@dataclass
class _ModelState:
    last_invocation: float
    in_flight: int = 0  # invocations through this gateway not yet answered (a long encode is not idleness)
    encoder_requests: float | None = None
    waking: asyncio.Task[None] | None = None
    wake_started: float | None = None


@dataclass
class Activator:
    catalog: Catalog
    metrics: GatewayMetrics
    scaler: Scaler
    fetch_metrics: Fetch
    wake_timeout_s: float = 90.0
    retry_after_s: int = 10
    poll_interval_s: float = 0.2
    clock: Clock = time.monotonic
    _models: dict[ObjectKey, _ModelState] = field(default_factory=dict)

    def _state(self, key: ObjectKey) -> _ModelState:
        state = self._models.get(key)
        if state is None:
            state = self._models[key] = _ModelState(last_invocation=self.clock())
        return state

    # ------------------------------------------------------------------ invocations
    def invocation_started(self, function: Function) -> None:
        """An invocation arrived: the model is busy until :meth:`invocation_finished`."""
        state = self._state(function.model_key)
        state.in_flight += 1
        state.last_invocation = self.clock()

    def invocation_finished(self, function: Function) -> None:
        """An invocation was answered (or failed): the quiet period counts from the last one's end."""
        state = self._state(function.model_key)
        state.in_flight = max(0, state.in_flight - 1)
        state.last_invocation = self.clock()

    async def replicas_for(self, function: Function, mode: str) -> list[str]:
        """The function's ready replicas, waking a sleeping model first (the caller's invocation is held)."""
        state = self._state(function.model_key)
        state.last_invocation = self.clock()
        replicas = self.catalog.replicas(function)
        if replicas or function.autoscaling is None or not function.autoscaling.scales_to_zero:
            return replicas
        held = self.metrics.held_invocations.labels(function.name)
        held.inc()
        try:
            # One wake until a replica is Ready (however many invocations wait), or until the last one timed out.
            if state.wake_started is None or self.clock() - state.wake_started > self.wake_timeout_s:
                state.wake_started = self.clock()
                state.waking = asyncio.create_task(self._wake(function, mode), name=f"wake-{function.name}")
            return await self._wait_for_replicas(function)
        finally:
            held.dec()

    async def _wake(self, function: Function, mode: str) -> None:
        autoscaling = function.autoscaling
        assert autoscaling is not None
        reason = f"{mode}_invocation"
        self.metrics.wakes.labels(function.name, reason).inc()
        if autoscaling.provider == "hpa" and autoscaling.spec_replicas == 0:
            await self.scaler.set_replicas(function.namespace, function.model_name, 1)
            who = "the gateway set spec.replicas to 1"
        else:
            who = "waiting for the autoscaler" if autoscaling.provider == "keda" else "already scaling up"
        log.info("Waking model", extra={"function": function.name, "reason": reason, "action": who})
        await self.scaler.record_event(
            function, "WokenUp", f"A {mode}-mode invocation of {function.name} found no ready replica: {who}"
        )

    async def _wait_for_replicas(self, function: Function) -> list[str]:
        deadline = self.clock() + self.wake_timeout_s
        state = self._state(function.model_key)
        while True:
            replicas = self.catalog.replicas(function)
            if replicas:
                if state.wake_started is not None:
                    self.metrics.wake_duration.labels(function.name).observe(self.clock() - state.wake_started)
                    state.wake_started = None
                return replicas
            if state.waking is not None and state.waking.done() and state.waking.exception() is not None:
                error = state.waking.exception()
                state.waking = state.wake_started = None
                raise InvocationError(
                    503, f"Failed to invoke function: could not wake {function.name!r}: {error}", self.retry_after_s
                )
            if self.clock() >= deadline:
                raise InvocationError(
                    503,
                    f"Failed to invoke function: {function.name!r} is waking up from zero replicas and has no ready "
                    f"replica after {self.wake_timeout_s:g} s; retry later",
                    self.retry_after_s,
                )
            await asyncio.sleep(self.poll_interval_s)

    # ------------------------------------------------------------------------ sleep
    async def put_idle_models_to_sleep(self) -> list[str]:
        """One pass: scale to 0 every hpa scale-to-zero model idle for its quiet period; the functions slept."""
        slept = []
        for function in self._sleep_candidates(self.catalog.functions()):
            autoscaling = function.autoscaling
            assert autoscaling is not None
            state = self._state(function.model_key)
            if state.waking is not None and not state.waking.done():
                continue
            if state.in_flight:  # an answer still on its way (a big model's first encode can outlast the period)
                state.last_invocation = self.clock()
                continue
            if not self.catalog.replicas(function):
                # Starting (or restarting): the quiet period counts from when it can serve, not from its creation.
                state.last_invocation, state.encoder_requests = self.clock(), None
                continue
            if await self._used_elsewhere(function, state):
                state.last_invocation = self.clock()
                continue
            idle = self.clock() - state.last_invocation
            if idle < autoscaling.quiet_period_s:
                continue
            await self.scaler.set_replicas(function.namespace, function.model_name, 0)
            self.metrics.sleeps.labels(function.name).inc()
            log.info("Scaled idle model to zero", extra={"function": function.name, "idle_s": round(idle)})
            await self.scaler.record_event(
                function,
                "ScaledToZero",
                f"No invocation for {idle:.0f} s (quiet period {autoscaling.quiet_period_s} s): spec.replicas 0",
            )
            state.encoder_requests = None
            slept.append(function.name)
        return slept

    @staticmethod
    def _sleep_candidates(functions: Iterable[Function]) -> list[Function]:
        return [
            f
            for f in functions
            if f.autoscaling is not None
            and f.autoscaling.scales_to_zero
            and f.autoscaling.provider == "hpa"
            and f.autoscaling.spec_replicas > 0
        ]

    async def _used_elsewhere(self, function: Function, state: _ModelState) -> bool:
        """Whether the replicas served work since the previous pass (every pass takes the count, so the one that
        ends the quiet period compares with the one before; the first pass and an unreadable replica say yes)."""
        total = 0.0
        for replica in self.catalog.replicas(function):
            try:
                total += work_requests(await self.fetch_metrics(replica))
            except Exception as exc:  # do not sleep on a guess
                log.warning("Failed to read replica metrics", extra={"replica": replica, "error": repr(exc)})
                state.encoder_requests = None
                return True
        previous, state.encoder_requests = state.encoder_requests, total
        return previous is None or total != previous

    async def run(self, interval_s: float) -> None:
        """Sleep passes every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.put_idle_models_to_sleep()
            except Exception:  # the next pass tries again
                log.exception("Scale-to-zero pass failed")
