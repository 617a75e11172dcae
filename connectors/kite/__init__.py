"""Zerodha Kite Connect: the local simulator (sim/)."""
