"""Everything that knows LSP, and nothing else does: server.py wires the methods of one
connection, session.py holds its state (settings layers, trust, messages, model
progress), action_commands.py and chat_commands.py the code actions and commands,
positions.py converts positions in the negotiated encoding to str offsets and back,
protocol.py makes pygls answer every request exactly once. The handlers are thin: they
translate to the features' text-and-offset calls and aiguilleur.types, and back."""
