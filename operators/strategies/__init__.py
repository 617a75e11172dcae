"""Strategies: built-in vectorised ones, the per-tick user API, and the runner operator."""

from operators.strategies.api import Signal, Tick, TickStrategy, VectorStrategy

__all__ = ["Signal", "Tick", "TickStrategy", "VectorStrategy"]
