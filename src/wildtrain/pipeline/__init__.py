"""One module per DVC stage: each reads its params and calls the library; stages/*.py and the CLI call these."""
