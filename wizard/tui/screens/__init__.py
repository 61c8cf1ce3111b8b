"""One module per wizard step (plus the modals); each screen answers its step with a new state."""
