"""The processing core between Faust and the domain: partitioned state, transactions, timers."""
