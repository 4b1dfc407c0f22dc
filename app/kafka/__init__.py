"""Kafka access: the connection every client is made from, topic names, and creating topics
and knowing their partition counts."""
