"""Foreign checkpoints -> this package's state-dict layout."""
