"""Faust agents, one module per business concept; each hands its stream to the engine."""
