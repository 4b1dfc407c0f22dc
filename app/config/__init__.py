"""The engine's settings, read once from `CPS_*` environment variables."""
