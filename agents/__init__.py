"""The engine's pipelines, one module per business concept: handlers over the engine's
per-partition context, and `register(services, ...)`, called by app/bootstrap.py."""
