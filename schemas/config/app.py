"""The whole config (AppConfig) and the rules that tie its sections together."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from schemas.config.base import Section
from schemas.config.market import CostModel, Instrument, SessionConfig
from schemas.config.services import (
    ControlConfig,
    KafkaConfig,
    KiteConfig,
    OutputConfig,
    RedisConfig,
)
from schemas.config.sources import (
    KafkaSourceConfig,
    KiteSourceConfig,
    SourceConfig,
)
from schemas.config.trading import (
    BrokerConfig,
    BrokerName,
    ExecutionConfig,
    HealthConfig,
    PortfolioConfig,
    StrategyConfig,
)
from schemas.enums import Broker

Sink = Literal["ledger", "kafka", "redis"]


class AppConfig(Section):
    source: SourceConfig
    sinks: list[Sink] = Field(default=["ledger"], min_length=1)
    kafka: KafkaConfig = KafkaConfig()
    redis: RedisConfig = RedisConfig()
    kite: KiteConfig = KiteConfig()
    instruments: list[Instrument] = Field(min_length=1)
    brokers: dict[BrokerName, BrokerConfig] = Field(min_length=1)
    strategies: list[StrategyConfig] = Field(
        default=[], description="left out: a run that only reads and checks the ticks"
    )
    costs: CostModel = CostModel()
    execution: ExecutionConfig = ExecutionConfig()
    session: SessionConfig = SessionConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    health: HealthConfig = HealthConfig()
    output: OutputConfig = OutputConfig()
    control: ControlConfig = ControlConfig()

    @field_validator("strategies", mode="before")
    @classmethod
    def _some(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("an empty list: list a strategy, or leave the key out")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> AppConfig:
        if len(set(self.sinks)) != len(self.sinks):
            raise ValueError("sinks: listed twice")
        tokens = {i.instrument_token for i in self.instruments}
        if len(tokens) != len(self.instruments):
            raise ValueError("instruments: duplicate instrument_token")
        seen: set[str] = set()
        for s in self.strategies:
            if s.id in seen:
                raise ValueError(f"strategies[{s.id}].id: duplicate strategy id")
            seen.add(s.id)
            if s.instruments != "all":
                unknown = sorted(set(s.instruments) - tokens)
                if unknown:
                    raise ValueError(
                        f"strategies[{s.id}].instruments: not in the instrument list: {unknown}"
                    )
            missing = [b.value for b in s.brokers if b not in self.brokers]
            if missing:
                raise ValueError(
                    f"strategies[{s.id}].brokers: not configured in brokers: {missing}"
                )
        if Broker.ZERODHA in self.routes_brokers() and not self.is_live():
            raise ValueError(
                "source.kind: a strategy trades on zerodha (real orders), which needs a live "
                "source (kite, or kafka with tail: true)"
            )
        for b, bc in self.brokers.items():
            mark_us = round(bc.risk.mark_interval_s * 1e6)
            if mark_us < 1 or (self.portfolio.snapshot_interval_s * 10**6) % mark_us:
                raise ValueError(
                    f"brokers.{b.value}.risk.mark_interval_s: must divide "
                    "portfolio.snapshot_interval_s"
                )
        if self.portfolio.snapshot_interval_s % self.health.window_s:
            raise ValueError("portfolio.snapshot_interval_s: must be a multiple of health.window_s")
        return self

    def is_live(self) -> bool:
        """Ticks arrive as they happen (kite, or kafka with tail)."""
        return isinstance(self.source, KiteSourceConfig) or (
            isinstance(self.source, KafkaSourceConfig) and self.source.tail
        )

    def control_by_redis(self) -> bool:
        return self.control.redis if self.control.redis is not None else self.is_live()

    def paper_protection(self) -> float:
        """The paper venue's market protection as a fraction: ``execution.market_protection``,
        else the one the Kite orders carry (Kite's own band, -1, modelled as 2%)."""
        pct = self.execution.market_protection
        if pct is None:
            pct = self.kite.market_protection if self.kite.market_protection > 0 else 2.0
        return pct / 100

    def stop_offsets(self) -> dict[str, float]:
        """SL / SL-M strategies: the trigger's offset (bps) from the signal price."""
        return {
            s.id: s.stop_offset_bps
            for s in self.strategies
            if s.order_type in ("SL", "SL-M") and s.stop_offset_bps is not None
        }

    def strategy_instruments(self, s: StrategyConfig) -> list[int]:
        if s.instruments == "all":
            return [i.instrument_token for i in self.instruments]
        return list(s.instruments)

    def routes_brokers(self) -> set[Broker]:
        """Brokers some enabled strategy trades on."""
        return {b for bs in self.routes().values() for b in bs}

    def routes(self) -> dict[int, list[Broker]]:
        """instrument token → brokers with an enabled strategy on it (sorted)."""
        out: dict[int, set[Broker]] = {}
        for s in self.strategies:
            if s.enabled:
                for tok in self.strategy_instruments(s):
                    out.setdefault(tok, set()).update(s.brokers)
        return {t: sorted(b, key=lambda x: x.value) for t, b in sorted(out.items())}
