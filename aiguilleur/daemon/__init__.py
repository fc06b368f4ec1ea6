"""One daemon for every editor window: `daemon.py` (the process), `shim.py` (what an editor
starts: the stdio relay) with `record.py` (what it keeps to replay to a new daemon), and
`identity.py` (which daemon is a window's own, and where it lives).

Empty on purpose: the shim imports this package and must start fast; nothing here may
pull in the engine or pygls."""
