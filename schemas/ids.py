"""Deterministic identifiers: every id derives from content, never from clocks or uuid4."""

from hashlib import blake2b


def content_id(prefix: str, *parts: object) -> str:
    """Return ``prefix-<16 hex>`` hashed from the parts, stable across processes and runs."""
    return f"{prefix}-" + blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def tick_id(instrument_token: int, ts_us: int, seq: int) -> str:
    """Id of the ``seq``-th valid tick of an instrument: the correlation id of what it causes."""
    return content_id("tick", instrument_token, ts_us, seq)
