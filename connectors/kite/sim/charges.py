"""The simulator's virtual contract note (POST /charges/orders): Zerodha's published equity
charges per order, computed here on their own (not with the product's cost model) and
rounded as a contract note is: STT to the rupee, every other head to the paisa."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connectors.kite.sim.exchange import Exchange
from connectors.kite.sim.rules import refuse

PAISA, RUPEE = Decimal("0.01"), Decimal("1")
NSE_TXN = Decimal("0.0000297")  # NSE transaction charge, both products
SEBI = Decimal("10") / Decimal("10000000")  # ₹10 a crore
GST = Decimal("0.18")  # on brokerage, exchange and SEBI charges
INTRADAY = dict(brokerage=Decimal("0.0003"), cap=Decimal("20"), stt_sell=Decimal("0.00025"),
                stt_buy=Decimal("0"), stamp_buy=Decimal("0.00003"))  # fmt: skip
DELIVERY = dict(brokerage=Decimal("0"), cap=Decimal("0"), stt_sell=Decimal("0.001"),
                stt_buy=Decimal("0.001"), stamp_buy=Decimal("0.00015"))  # fmt: skip


def _r(x: Decimal, unit: Decimal = PAISA) -> Decimal:
    return x.quantize(unit, rounding=ROUND_HALF_UP)


def order_charges(side: str, product: str, quantity: int, price: float) -> dict[str, Any]:
    """One order's charges as Kite's contract note lists them."""
    turnover = Decimal(quantity) * Decimal(str(price))
    rates = DELIVERY if product == "CNC" else INTRADAY
    sell = side == "SELL"
    brokerage = _r(turnover * rates["brokerage"])
    if product != "CNC":
        brokerage = min(brokerage, rates["cap"])
    stt = _r(turnover * (rates["stt_sell"] if sell else rates["stt_buy"]), RUPEE)
    stamp = Decimal(0) if sell else _r(turnover * rates["stamp_buy"])
    exchange, sebi = _r(turnover * NSE_TXN), _r(turnover * SEBI)
    gst = _r((brokerage + exchange + sebi) * GST)
    total = brokerage + stt + stamp + exchange + sebi + gst
    return {
        "transaction_tax": float(stt),
        "transaction_tax_type": "stt",
        "exchange_turnover_charge": float(exchange),
        "sebi_turnover_charge": float(sebi),
        "brokerage": float(brokerage),
        "stamp_duty": float(stamp),
        "gst": {"igst": float(gst), "cgst": 0.0, "sgst": 0.0, "total": float(gst)},
        "total": float(total),
    }


def contract_notes(ex: Exchange, asked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers in the order asked (Kite's answers carry no order id); an order Kite does
    not know, or one with nothing traded, is refused."""
    out = []
    for a in asked:
        o = ex.get(str(a["order_id"]))
        if not o.filled:
            raise refuse(f"Order {o.order_id} has no trades: {o.status}")
        side, product = str(a["transaction_type"]), str(a["product"])
        qty, price = int(a["quantity"]), float(a["average_price"])
        row = {k: a.get(k) for k in ("exchange", "tradingsymbol", "variety", "order_type")}
        row.update(transaction_type=side, product=product, quantity=qty, price=price)
        out.append({**row, "charges": order_charges(side, product, qty, price)})
    return out
