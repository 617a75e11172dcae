"""Dataflow operators in the style of ``bytewax.operators``: ``op(step_id, up, ...) -> stream``."""
