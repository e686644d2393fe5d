"""Typed :class:`aiohttp.web.AppKey` slots shared by the app factory and the route handlers."""

from __future__ import annotations

import asyncio

from aiohttp import web

from sam_gateway.activator import Activator
from sam_gateway.catalog import Catalog
from sam_gateway.direct import DirectListeners
from sam_gateway.metrics import GatewayMetrics
from sam_gateway.proxy import Forwarder
from sam_gateway.settings import GatewaySettings

SETTINGS = web.AppKey("settings", GatewaySettings)
CATALOG = web.AppKey("catalog", Catalog)
METRICS = web.AppKey("metrics", GatewayMetrics)
FORWARDER = web.AppKey("forwarder", Forwarder)
DIRECT = web.AppKey("direct", DirectListeners)
# Scale to zero; absent when the gateway runs without API access for it (tests, scale_to_zero_enabled false).
ACTIVATOR = web.AppKey("activator", Activator)
CHANGED = web.AppKey("catalog_changed", asyncio.Event)
# On a direct-mode app: the main app, whose state it uses.
PARENT = web.AppKey("parent", web.Application)
# On a direct-mode app: the port it listens on.
DIRECT_PORT = web.AppKey("direct_port", int)
