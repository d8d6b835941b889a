"""Train, merge and evaluate packets."""
