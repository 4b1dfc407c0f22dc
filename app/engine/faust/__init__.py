"""Faust and aiokafka as the engine uses them: the Faust app (app.py) and the adapter, the only
place that reaches into their internals (adapter.py: `install()`, `attach()`; one module per
adapted behaviour, each naming the upstream bug or limit it works around)."""
