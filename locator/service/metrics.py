"""Prometheus metrics of the service: requests by route and status, a latency histogram, and the points."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("geoloc_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("geoloc_request_seconds", "Request latency", ["route"], buckets=BUCKETS,
                                 registry=self.registry)
        self.points = Gauge("geoloc_points", "Points in the collection", registry=self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> str:
        return generate_latest(self.registry).decode()
