"""Everything that knows LSP, and nothing else does: server.py wires one connection in one
place (its session and each handler module's `register`: lifecycle, completions,
workspace (saved and watched files), actions, chat, status); session.py holds the
connection's state (settings layers, trust, messages, model progress, the repository
index) and builds the features; positions.py converts positions in the negotiated
encoding to str offsets and back; protocol.py makes pygls answer every request exactly
once, and is the one module that reaches pygls' private names. The handlers are thin:
they translate to the features' text-and-offset calls and aiguilleur.types, and back."""
