"""The adapter between the engine and Faust/aiokafka: the only place that reaches into
their internals."""
