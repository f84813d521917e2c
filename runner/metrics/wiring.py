"""The metrics of one supervisor: a registry with its instruments and NI sampler, fed by
the supervisor's hooks, served on the configured endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runner import __version__
from runner.metrics.endpoint import Endpoint
from runner.metrics.families import families
from runner.metrics.instruments import Instruments
from runner.metrics.sample import Sampler

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor


class _NICollector(Collector):
    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("nirunner_info", "The supervisor's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield from families(self.sampler.get())


class Metrics:
    def __init__(self, sup: Supervisor, max_age: float = 5.0) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.instruments = Instruments(self.registry)
        self.sampler = Sampler(sup, max_age)
        self.registry.register(_NICollector(self.sampler))
        self.endpoint: Endpoint | None = None
        sup.on_pass = self.instruments.pass_done
        sup.on_run = self.instruments.ran
        sup.events.listeners.append(self.instruments.event)

    def serve(self) -> None:
        config = self.sampler.sup.config.metrics
        if config is None:
            return
        self.endpoint = Endpoint(config, self.registry)
        self.endpoint.start()

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None


def attach(sup: Supervisor) -> Metrics | None:
    """Metrics for `sup` when its config has a `metrics` section (else None): its hooks
    count from now on; `serve()` opens the endpoint."""
    config = sup.config.metrics
    return None if config is None else Metrics(sup, config.cache_seconds)
