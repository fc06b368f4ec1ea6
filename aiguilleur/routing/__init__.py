"""Which track a request takes: `router.py` (the routes of a kind, in order), `route_loop.py`
(one loop over them with one adapter per backend: privacy, fallback, what to tell the
user), `runtime.py` (the host: the engine, the remote routes and the caches one process
shares between its sessions)."""
