"""What the model sees besides the cursor: `window.py` (the text around the cursor, cut to
the prompt's budget by one rule for every backend), `ring.py` (chunks of the other files
the user opened or edited), `index.py` (the repository index: per file, what
`definitions.py` finds it defines and imports), `privacy.py` (private files and secrets:
what may leave the machine, and what the index never reads). Knows nothing of LSP or of
backends."""
