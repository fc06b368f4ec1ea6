"""Helpers the tests share: isolated homes, the tiny GGUF, an LSP session over stdio."""
