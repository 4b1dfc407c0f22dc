"""The engine's pipelines, one module per business concept: handlers over the engine's
per-partition context, and a `register(...)` whose keyword parameters name the parts it
takes (app/bootstrap.py hands them over by name, app/config/wiring.py)."""
