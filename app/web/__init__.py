"""HTTP views of a worker (Faust web, aiohttp)."""
