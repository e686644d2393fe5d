"""A stand-in encoder replica for the gateway fault tests: ``python stub_replica.py PORT DELAY_S``.

Answers ``GET /readyz`` at once and ``POST /`` with a small CVAT-shaped JSON body after ``DELAY_S`` seconds (a slow
replica when large). The gateway is the subject of those tests, so no model is needed here.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])

    async def invoke(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.json_response({"blob": "", "replica": port})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_get("/readyz", ready)
    app.router.add_post("/{tail:.*}", invoke)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
