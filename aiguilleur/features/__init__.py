"""What aiguilleur does for an editor, in text and str offsets: completion (the FIM
pipeline), actions (code actions and their prompts, prompts.py), chat (chat documents,
streamed answers). Each is built from one FeatureNeeds (needs.py) and reads its own
section of the settings. No LSP here: lsp/ converts positions and shapes at the edge."""
