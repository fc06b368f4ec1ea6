"""What aiguilleur does for an editor, in text and str offsets: the completion pipeline,
code actions, chat. No LSP here: lsp/ converts positions and shapes at the edge."""
