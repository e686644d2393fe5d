"""sam-gateway: a Nuclio-dashboard-compatible front door that lists Ready SamModels to CVAT and routes calls.

Entry point: ``sam-gateway`` / ``python -m sam_operator.gateway`` (:mod:`sam_operator.gateway.__main__`).
Public API: :func:`sam_operator.gateway.app.create_app`, :class:`sam_operator.gateway.settings.GatewaySettings`,
:class:`sam_operator.gateway.catalog.Catalog`, :class:`sam_operator.gateway.watcher.ClusterWatcher`.
"""
