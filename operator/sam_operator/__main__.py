"""Entry point of the operator process: settings → logging → metrics server → kopf."""

from __future__ import annotations

import asyncio
import logging

import kopf
from prometheus_client import start_http_server
from sam_contract.logs import configure_logging

from sam_operator import handlers  # noqa: F401  (registers the kopf handlers)
from sam_operator.settings import OperatorSettings


def main() -> None:
    settings = OperatorSettings()
    configure_logging(json_lines=settings.log_format == "json", level=settings.log_level)
    start_http_server(settings.metrics_port, addr=settings.metrics_host)
    logging.getLogger(__name__).info("Started metrics server", extra={"port": settings.metrics_port})
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=f"http://{settings.health_host}:{settings.health_port}/healthz",
            memo=kopf.Memo(settings=settings),
        )
    )


if __name__ == "__main__":
    main()
