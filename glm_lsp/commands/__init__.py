"""Front-end commands that are more than argument plumbing."""
