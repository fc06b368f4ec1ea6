"""Everything that knows LSP: thin handlers that translate to aiguilleur.types and back."""
