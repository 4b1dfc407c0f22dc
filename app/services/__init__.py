"""The worker's long-lived services beside the pipelines: the configuration catalog, the
click service and its spool, the monitor, plan progress, reconciliation, the admin API's
rules and the demo stream."""
