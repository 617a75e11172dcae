"""Local Kite Connect simulator: HTTP API and (later) the ticker websocket, over a Parquet tape."""
