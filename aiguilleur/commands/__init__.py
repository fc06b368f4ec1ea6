"""The bodies of the `aiguilleur` commands other than `serve` (cli.py parses and
dispatches): one module per command (cache, complete, daemon, demo, doctor, index, pull,
trust, usage), plus replay.py, the editor-like stdio client that `demo` and the benches
drive a real server with. Each may use the whole package."""
