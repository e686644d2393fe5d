"""sam-gateway: a Nuclio-dashboard-compatible front door that lists Ready SamModels to CVAT and routes calls.

Entry point: ``sam-gateway`` / ``python -m sam_gateway`` (:mod:`sam_gateway.__main__`).
Public API: :func:`sam_gateway.app.create_app`, :class:`sam_gateway.settings.GatewaySettings`,
:class:`sam_gateway.catalog.Catalog`, :class:`sam_gateway.watcher.ClusterWatcher`.
"""
