"""The bodies of the `aiguilleur` commands other than `serve` (cli.py parses and
dispatches): each module is one command and may use the whole package."""
