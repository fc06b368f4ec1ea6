"""Models behind the network, and the money they cost: `routes.py` (the remote routes
the runtime owns: keys, prices, the response cache, failures), `openrouter.py` and
`openai_compat.py` (the HTTP clients), `spending.py` (a budget reserved before a request
and settled after, the only path to a paid request), `ledger.py` (the spend ledger on
disk, shared by every process of the user), `responses.py` (the response cache),
`keys.py` (API keys from the environment or a key file), `prices.py` (model prices and
each key's remaining limit, refreshed in the background), `usage.py` (the spend report).
Knows nothing of LSP."""
