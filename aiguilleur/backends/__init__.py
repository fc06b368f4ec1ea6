"""Everything that talks to a model. Never imports lsprotocol."""
