"""What the model sees besides the cursor: `window.py` (the text around the cursor, cut to
the prompt's budget by one rule for every backend) and `ring.py` (chunks of the other files
the user opened or edited). Knows nothing of LSP or of backends."""
