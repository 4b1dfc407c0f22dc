"""The tokens every test worker is started with (tests/integration/conftest.py)."""

ADMIN_TOKEN = "test-admin"
VIEW_TOKEN = "test-view"
