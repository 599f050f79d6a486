# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The real handover event source run in-process on 127.0.0.1, an ephemeral port (unit and security tests).

Only loopback: the source is started with ``host: 127.0.0.1`` and every
request goes to the ``base_url`` it reports.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eda_paths import load  # noqa: E402

handover = load("handover", "edgemig_handover_source")

TOKEN = "t0ken-for-the-unit-tests-0123456789"
EDGES = ["edge1", "edge2"]
SERVICES = {"u1": ["apache"]}


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def started(args: dict[str, Any]):
    """(source, queue, task) of ``handover.main`` with ``args`` over the defaults above."""
    queue = asyncio.Queue()
    full = {"host": "127.0.0.1", "port": 0, "token": TOKEN, "edges": EDGES, "services": SERVICES, **args}
    task = asyncio.create_task(handover.main(queue, full))
    # main() builds the source; find it through the server it started.
    for _attempt in range(200):
        await asyncio.sleep(0.01)
        if task.done():
            task.result()  # a source that refused to start: its error
        srcs = [o for o in handover.LIVE if o.queue is queue]
        if srcs and srcs[0].base_url:
            assert srcs[0].base_url.startswith("http://127.0.0.1:")
            return srcs[0], queue, task
    raise AssertionError("source did not start")


async def stop(task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def post(session, url: str, body: Any, headers: dict | None = None) -> tuple[int, Any]:
    """POST ``body`` (JSON unless bytes or str), with the token unless ``headers`` say otherwise."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with session.post(url, data=data, headers=auth() if headers is None else headers) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text
