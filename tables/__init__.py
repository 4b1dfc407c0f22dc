"""Table definitions of the engine, one module per business concept."""
