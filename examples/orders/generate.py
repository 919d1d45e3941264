"""A recorded log of storefront traffic for the orders service, reproducible from a seed.

``generate(n, seed)`` yields ``n`` root events as the storefront publishes
them: mostly ``OrderPlaced`` (a customer, 1-4 order lines with sku, qty,
price and weight, a destination), and now and then an ``OrderCancelled`` for
an order placed earlier (same correlation id: the order number). A few orders
are invalid (no lines, a zero quantity, a currency or country we do not
serve, no e-mail), some ask for discontinued or scarce SKUs, and some look
like fraud, so every branch of the service is exercised.

Everything is drawn from ``random.Random(seed)``: event ids, timestamps
(starting 2024-05-06 07:00 UTC) and payloads, so a seed always gives the same
lines byte for byte.

Command line::

    python -m examples.orders.generate N OUT [--seed S] [--overwrite]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from legacy_bus import BadEventLog, Event, EventLog

__all__ = ["CATALOG", "generate", "main"]

START = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)

# sku -> (unit price EUR, shipping weight kg, how often it sells)
CATALOG: dict[str, tuple[float, float, int]] = {
    "CABLE-USBC-2M": (9.99, 0.08, 30),
    "TEE-ORG-M": (24.0, 0.2, 26),
    "MUG-CER-01": (12.9, 0.45, 22),
    "HDPH-BT-200": (89.0, 0.35, 14),
    "BOOK-PY-3E": (39.99, 1.1, 14),
    "KETTLE-1L7": (39.0, 1.4, 10),
    "LAMP-DESK-LED": (45.5, 1.8, 10),
    "BLENDER-900": (79.9, 3.9, 8),
    "MONITOR-27": (279.0, 6.4, 8),
    "CHAIR-OAK": (189.0, 7.8, 7),
    "RUG-160x230": (149.0, 9.5, 6),
    "PLANTER-XL": (59.0, 12.0, 8),
    "BIKE-CITY-28": (649.0, 17.5, 10),
    "DUMBBELL-SET-20": (119.0, 21.0, 10),
    "BOOKCASE-5": (129.0, 24.0, 11),
    "DESK-STAND-140": (549.0, 32.0, 6),
    "SOFA-2S-GREY": (799.0, 41.0, 4),
    "TREADMILL-X2": (899.0, 54.0, 2),
    "GPU-RTX-4090": (1899.0, 2.4, 2),
    "SPEAKER-MINI-V1": (19.99, 0.3, 1),  # discontinued
}

# destination -> share of customers
COUNTRIES = {"DE": 33, "FR": 25, "NL": 8, "AT": 7, "IT": 7, "ES": 6, "BE": 4, "PL": 4, "GB": 3, "CH": 2, "US": 2}

FIRST = ["anna", "ben", "chloe", "david", "emma", "felix", "giulia", "hugo", "ines", "jonas", "lea", "marco",
         "nora", "oskar", "paula", "quentin", "rosa", "sven", "tara", "ugo", "vera", "wim", "yara", "zoe"]  # fmt: skip
LAST = ["adler", "bernard", "costa", "dubois", "eriksen", "fischer", "garcia", "huber", "jansen", "kowalski",
        "lambert", "meyer", "novak", "peeters", "rossi", "schmidt", "vogel", "weber"]  # fmt: skip
DOMAINS = ["example.com", "mail.example", "post.example", "web.example"]
CANCEL_REASONS = ["changed_mind", "found_cheaper", "ordered_twice", "delivery_too_slow"]


def _customers(rng: random.Random, n: int) -> list[dict]:
    countries, shares = list(COUNTRIES), list(COUNTRIES.values())
    out = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        out.append(
            {
                "id": f"C{10000 + i}",
                "name": f"{first.title()} {last.title()}",
                "email": f"{first}.{last}{i}@{rng.choice(DOMAINS)}",
                "tier": rng.choices(["standard", "silver", "gold"], [70, 20, 10])[0],
                "orders": rng.choices([0, rng.randint(1, 5), rng.randint(6, 60)], [20, 50, 30])[0],
                "country": rng.choices(countries, shares)[0],
                "token": f"tok_{rng.choice(['visa', 'mc', 'amex'])}_{rng.randint(1000, 9999)}",
            }
        )
    return out


def _lines(rng: random.Random) -> list[dict]:
    skus, popularity = list(CATALOG), [w for _, _, w in CATALOG.values()]
    lines: dict[str, int] = {}
    for _ in range(rng.choices([1, 2, 3, 4], [58, 27, 11, 4])[0]):
        sku = rng.choices(skus, popularity)[0]
        lines[sku] = lines.get(sku, 0) + rng.choices([1, 2, 3], [80, 15, 5])[0]
    return [{"sku": s, "qty": q, "price": CATALOG[s][0], "weight_kg": CATALOG[s][1]} for s, q in lines.items()]


def _order(rng: random.Random, number: int, customer: dict) -> dict:
    country = customer["country"]
    order = {
        "order_id": f"ORD-{number}",
        "customer": {k: customer[k] for k in ("id", "name", "email", "tier", "orders")},
        "items": _lines(rng),
        "currency": "EUR",
        "ship_to": {"country": country},
        "billing_country": country,
        "payment_token": customer["token"],
    }
    roll = rng.random()
    if roll < 0.045:  # broken checkouts (old app versions, API partners)
        kind = rng.choice(["no_items", "zero_qty", "currency", "country", "email"])
        if kind == "no_items":
            order["items"] = []
        elif kind == "zero_qty":
            order["items"][0]["qty"] = 0
        elif kind == "currency":
            order["currency"] = rng.choice(["USD", "GBP", "CHF"])
        elif kind == "country":
            order["ship_to"]["country"] = rng.choice(["BR", "NO", "AU"])
        else:
            order["customer"]["email"] = ""
    elif roll < 0.085:  # discontinued SKU, or more GPUs than we have
        if rng.random() < 0.5:
            order["items"].append({"sku": "SPEAKER-MINI-V1", "qty": 1, "price": 19.99, "weight_kg": 0.3})
        else:
            order["items"].append({"sku": "GPU-RTX-4090", "qty": rng.randint(4, 8), "price": 1899.0, "weight_kg": 2.4})
    elif roll < 0.115:  # looks like fraud: new account, far-away billing, big basket
        order["customer"]["orders"] = 0
        order["customer"]["email"] = f"{customer['id'].lower()}@{rng.choice(['mailinator.com', 'trashmail.de'])}"
        order["billing_country"] = rng.choice(["US", "GB", "NL"]) if country != "US" else "DE"
        order["items"].append({"sku": "GPU-RTX-4090", "qty": 1, "price": 1899.0, "weight_kg": 2.4})
    elif roll < 0.13:
        order["payment_token"] = "tok_chargeDeclined"
    return order


def generate(n: int, seed: int = 7) -> Iterator[Event]:
    """Yield ``n`` root events of recorded storefront traffic, the same ones for the same seed."""
    if n < 0:
        raise ValueError(f"generate(n={n}): n must be >= 0")
    rng = random.Random(seed)
    customers = _customers(rng, 400)
    clock = START
    number = 100000 + rng.randrange(1000) * 100
    placed: list[str] = []
    for _ in range(n):
        clock += timedelta(milliseconds=rng.randint(300, 60_000))
        event_id = f"{rng.getrandbits(128):032x}"
        source = rng.choices(["web", "ios", "android"], [60, 25, 15])[0]
        if len(placed) > 20 and rng.random() < 0.05:
            order_id = rng.choice(placed[-200:])
            yield Event(
                type="OrderCancelled",
                payload={"order_id": order_id, "reason": rng.choice(CANCEL_REASONS)},
                id=event_id,
                correlation_id=order_id,
                timestamp=clock,
                headers={"source": source},
            )
            continue
        number += 1
        order = _order(rng, number, rng.choice(customers))
        placed.append(order["order_id"])
        yield Event(
            type="OrderPlaced",
            payload=order,
            id=event_id,
            correlation_id=order["order_id"],
            timestamp=clock,
            headers={"source": source},
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.orders.generate",
        description="Write a reproducible recorded log of orders traffic (JSON Lines).",
    )
    parser.add_argument("n", type=int, help="how many root events")
    parser.add_argument("out", help="the log file to write")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("N must be >= 0")
    try:
        written = EventLog(args.out).write(generate(args.n, args.seed), overwrite=args.overwrite)
    except BadEventLog as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written} events to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
