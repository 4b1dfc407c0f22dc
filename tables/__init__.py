"""Table definitions of the engine, one module per business concept, each with
`define(engine)`, called by app/bootstrap.py."""
