# SPDX-License-Identifier: GPL-3.0-or-later
"""edgemig image: a WSGI app whose state lives only in its processes' memory.

BOOT_ID and STARTED are made once in gunicorn's master (preload_app) and
inherited by every worker; COUNTER is each worker's own. A restore keeps all
three and the workers' pids; a restart makes a new BOOT_ID and counters from 0.
"""
import os
import time
import uuid

BOOT_ID = uuid.uuid4().hex
STARTED = time.time()
COUNTER = 0


def application(environ, start_response):
    global COUNTER
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        body = "ok\n"
    elif path == "/":
        COUNTER += 1
        body = (f"boot_id={BOOT_ID}\nworker={os.getpid()}\ncounter={COUNTER}\n"
                f"uptime_s={time.time() - STARTED:.3f}\n")
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
