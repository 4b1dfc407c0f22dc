"""Kafka access: the connection every client is made from, topic names and creation, and
producing records to the engine's inputs."""
