"""The services beside the pipelines: the configuration catalog, the click service and its
spool, the monitor, plan progress, reconciliation, the admin API's rules, and for the
commands the demo stream and the feeder of the engine's input topics."""
