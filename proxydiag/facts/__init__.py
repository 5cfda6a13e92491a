"""The facts every rule reads, whatever evidence showed them: connections, expectations, legs."""
