"""Everything persistent. Knows nothing of LSP or of backends."""
