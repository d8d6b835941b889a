"""Which packet may answer a question, and which fits it best."""
