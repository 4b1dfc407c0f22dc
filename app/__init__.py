"""CPS attribution and commission engine."""
