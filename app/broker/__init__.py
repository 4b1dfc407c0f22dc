"""The local Kafka broker of development and tests (`cps kafka`)."""


class BrokerError(RuntimeError):
    """The local broker cannot be fetched, started or stopped; the message says what to do."""
