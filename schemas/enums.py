"""Enumerations shared by every stage. Values are the wire/ledger strings."""

from enum import Enum


class Broker(str, Enum):
    PAPER = "paper"
    ZERODHA = "zerodha"


class SignalType(str, Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(str, Enum):
    PLACED = "PLACED"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


class TradingState(str, Enum):
    """What a broker's account may do: every order, only reducing orders, or none."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class StateReason(str, Enum):
    """Why a broker's trading state changed."""

    DAILY_LOSS_BREACHED = "DAILY_LOSS_BREACHED"
    NEW_TRADING_DAY = "NEW_TRADING_DAY"
    OPERATOR_HALT = "OPERATOR_HALT"
    OPERATOR_FLATTEN = "OPERATOR_FLATTEN"
    OPERATOR_RESUME = "OPERATOR_RESUME"
    TOKEN_INVALID = "TOKEN_INVALID"  # Kite refused our access token (expired) or permission
    PLACEMENT_BACKLOG = "PLACEMENT_BACKLOG"  # the Kite placement queue is full
    RECONCILE_MISMATCH = "RECONCILE_MISMATCH"  # the account's positions differ from Kite's


class Stage(str, Enum):
    MARKET_DATA = "market_data"
    SIGNAL_GENERATION = "signal_generation"
    RISK_VALIDATION = "risk_validation"
    ORDER_EXECUTION = "order_execution"
    PORTFOLIO_UPDATES = "portfolio_updates"


class HealthStatus(str, Enum):
    STARTUP = "startup"
    HEALTHY = "healthy"
    IDLE = "idle"
    WARNING = "warning"
    CRITICAL = "critical"


class EventType(str, Enum):
    MARKET_TICK = "market_tick"
    TRADING_SIGNAL = "trading_signal"
    VALIDATED_SIGNAL = "validated_signal"
    REJECTED_SIGNAL = "rejected_signal"
    ORDER_PLACED = "order_placed"
    ORDER_FILLED = "order_filled"
    ORDER_FAILED = "order_failed"
    FEES_SETTLED = "fees_settled"
    PNL_SNAPSHOT = "pnl_snapshot"
    STAGE_HEALTH = "stage_health"
    DEAD_LETTER = "dead_letter"
    TRADING_STATE_CHANGED = "trading_state_changed"


class Product(str, Enum):
    """Zerodha equity products: MIS (intraday, squared off at the cut-off), CNC (delivery)."""

    MIS = "MIS"
    CNC = "CNC"


class RejectReason(str, Enum):
    """Machine-readable reasons a risk check refuses a signal."""

    MAX_POSITION_EXCEEDED = "MAX_POSITION_EXCEEDED"
    MAX_ORDER_VALUE_EXCEEDED = "MAX_ORDER_VALUE_EXCEEDED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    MAX_DAILY_LOSS_BREACHED = "MAX_DAILY_LOSS_BREACHED"
    MAX_ORDER_RATE_EXCEEDED = "MAX_ORDER_RATE_EXCEEDED"
    INSTRUMENT_NOT_ALLOWED = "INSTRUMENT_NOT_ALLOWED"
    MARKET_CLOSED = "MARKET_CLOSED"
    MAX_POSITION_VALUE_EXCEEDED = "MAX_POSITION_VALUE_EXCEEDED"
    MAX_GROSS_EXPOSURE_EXCEEDED = "MAX_GROSS_EXPOSURE_EXCEEDED"
    MAX_OPEN_POSITIONS_EXCEEDED = "MAX_OPEN_POSITIONS_EXCEEDED"
    PRICE_OUTSIDE_BAND = "PRICE_OUTSIDE_BAND"
    LOT_SIZE_MISMATCH = "LOT_SIZE_MISMATCH"
    TRADING_HALTED = "TRADING_HALTED"
    MIS_CUTOFF = "MIS_CUTOFF"  # an MIS order that would open or add after the cut-off
    CNC_SHORT_NOT_ALLOWED = "CNC_SHORT_NOT_ALLOWED"  # a CNC sell beyond what is held
    CIRCUIT_LIMIT = "CIRCUIT_LIMIT"  # the price is outside the instrument's circuit band


class DeadLetterReason(str, Enum):
    """Machine-readable reasons an input record was refused."""

    MISSING_TOKEN = "MISSING_TOKEN"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    TIMESTAMP_OUT_OF_ORDER = "TIMESTAMP_OUT_OF_ORDER"
    MALFORMED_JSON = "MALFORMED_JSON"
    INVALID_FIELD = "INVALID_FIELD"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    STRATEGY_ERROR = "STRATEGY_ERROR"  # a strategy raised or returned an invalid signal
    NON_TRADING_DAY = "NON_TRADING_DAY"  # a tick dated on a weekend or exchange holiday
    TIMESTAMP_IMPLAUSIBLE = "TIMESTAMP_IMPLAUSIBLE"  # far future or far past for the session
    MALFORMED_PACKET = "MALFORMED_PACKET"  # a KiteTicker binary packet that cannot be read


class HealthReason(str, Enum):
    """Why a stage has the status it has."""

    OK = "OK"
    STARTUP_GRACE = "STARTUP_GRACE"
    MARKET_CLOSED = "MARKET_CLOSED"
    NO_ENABLED_STRATEGY = "NO_ENABLED_STRATEGY"
    NO_TICKS = "NO_TICKS"
    FEED_STALE = "FEED_STALE"  # live feed silent with its socket open: reconnected
    TOPIC_LOST = "TOPIC_LOST"  # the Kafka tick topic vanished or was recreated: offsets lost
    NO_ACTIVITY = "NO_ACTIVITY"
    STAGE_STALLED = "STAGE_STALLED"
    LATENCY_HIGH = "LATENCY_HIGH"
    STRATEGY_ERROR = "STRATEGY_ERROR"  # a strategy failed on some instrument and stopped there
    TRADING_REDUCING = "TRADING_REDUCING"  # the account only reduces positions
    TRADING_HALTED = "TRADING_HALTED"  # the account sends no orders
    NO_WINDOW_YET = "NO_WINDOW_YET"  # status command: the stage has not closed a window yet
