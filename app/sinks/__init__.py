"""Notification sinks: fan-out into per-sink queues, rate-limited delivery, subscriptions."""
