"""Real infrastructure: the Compose files, the Docker engine, `docker compose` up/down."""
