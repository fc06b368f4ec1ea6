"""What the user asked for: `settings.py` (the settings Structs), `loading.py` (the layers:
defaults, user file, workspace file, editor settings), `trust.py` (what an untrusted
layer may change) with `trust_store.py` (the repositories the user trusted), `homes.py`
(the XDG directories). Knows nothing of LSP, models or the network."""
