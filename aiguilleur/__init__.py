"""aiguilleur: an AI language server that routes each request to the right model."""

__version__ = "0.1.0"
