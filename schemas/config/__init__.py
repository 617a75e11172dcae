"""Configuration schema. Every field of the YAML config is declared in this package, and only
here; this module re-exports every name (``from schemas.config import AppConfig``)."""

from schemas.config.app import AppConfig, Sink
from schemas.config.base import ConfigError, Section, SourceUnavailable
from schemas.config.market import CostModel, Instrument, SessionConfig, SpecialSession
from schemas.config.services import (
    DEFAULT_REDIS_URL,
    REDIS_URL_ENV,
    ControlConfig,
    KafkaConfig,
    KiteConfig,
    OutputConfig,
    RedisConfig,
)
from schemas.config.sources import (
    KafkaSourceConfig,
    KiteSourceConfig,
    ReplaySourceConfig,
    SourceConfig,
    TimestampUnit,
)
from schemas.config.trading import (
    BrokerConfig,
    ExecutionConfig,
    HealthConfig,
    PortfolioConfig,
    RiskConfig,
    StrategyConfig,
)

__all__ = [
    "DEFAULT_REDIS_URL",
    "REDIS_URL_ENV",
    "AppConfig",
    "BrokerConfig",
    "ConfigError",
    "ControlConfig",
    "CostModel",
    "ExecutionConfig",
    "HealthConfig",
    "Instrument",
    "KafkaConfig",
    "KafkaSourceConfig",
    "KiteConfig",
    "KiteSourceConfig",
    "OutputConfig",
    "PortfolioConfig",
    "RedisConfig",
    "ReplaySourceConfig",
    "RiskConfig",
    "Section",
    "SessionConfig",
    "Sink",
    "SourceConfig",
    "SourceUnavailable",
    "SpecialSession",
    "StrategyConfig",
    "TimestampUnit",
]
