"""Faust agents, one module per stage; each only does I/O around a pure core."""
