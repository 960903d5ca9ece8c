#!/usr/bin/env python3
"""A daily sales export (CSV) from the shop's order and payment topics: what an integrator
would write against the topic contract (worker-kit/contract).

The rules every consumer of the contract follows:
- each message is validated against its type's schema from the AsyncAPI document (a message
  that does not match stops the consumer: better stopped than wrong);
- messages are de-duplicated by the envelope's `id` (delivery is at least once), and an
  aggregate's events are applied in their `sequence` order (Kafka keeps them in order per key);
- offsets are committed only after the consumer's own write (the state file and the CSV, each
  replaced atomically), so a consumer killed at any point resumes where its output stands.

The CSV has a row per day (UTC, the day an order was placed) and currency:
`day,currency,orders,revenue,captured`: orders confirmed, shipped or delivered; their totals
less refunds (minor units); what their payments captured.

Usage: daily_sales.py --brokers HOST:PORT --contract asyncapi.json --out sales.csv
                      --state state.json [--prefix shop] [--group daily-sales]
                      [--exit-when-idle SECONDS] [--pace SECONDS] [--batch N]
"""

import argparse
import json
import os
import sys
import tempfile
import time

import jsonschema
from confluent_kafka import Consumer, KafkaError

SOLD = {"confirmed", "shipped", "delivered"}


def validators(contract_path):
    """A validator per message type, from the AsyncAPI document's message payloads."""
    with open(contract_path) as f:
        document = json.load(f)
    components = {"schemas": document["components"]["schemas"]}
    out = {}
    for name, message in document["components"]["messages"].items():
        schema = dict(message["payload"])
        schema["components"] = components
        out[name] = jsonschema.Draft202012Validator(schema)
    return out


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(path):
    if not os.path.exists(path):
        return {"seen": [], "orders": {}, "captured": {}, "sequences": {}}
    with open(path) as f:
        return json.load(f)


def apply(state, envelope):
    """Folds one message into the state; False when it was seen before (a duplicate)."""
    seen = set(state["seen"])
    if envelope["id"] in seen:
        return False
    key = f'{envelope["tenant"]}/{envelope["aggregate_type"]}/{envelope["aggregate_id"]}'
    if envelope["sequence"] <= state["sequences"].get(key, 0):
        # An older event of this aggregate than one applied already: never after the newer.
        state["seen"].append(envelope["id"])
        return False
    state["sequences"][key] = envelope["sequence"]
    state["seen"].append(envelope["id"])
    kind, data = envelope["type"], envelope["data"]
    order_key = f'{envelope["tenant"]}/{envelope["aggregate_id"]}'
    orders = state["orders"]
    if kind == "order.placed":
        orders[order_key] = {
            "day": envelope["occurred_at"][:10],
            "currency": data["total"]["currency"],
            "total": data["total"]["amount"],
            "refunded": 0,
            "status": "placed",
        }
    elif kind.startswith("order.") and order_key in orders:
        order = orders[order_key]
        status = kind.split(".", 1)[1]
        if status in SOLD or status == "cancelled":
            order["status"] = status
        elif kind == "order.refunded":
            order["refunded"] = data["refunded_total"]["amount"]
    elif kind == "payment.captured":
        # A payment has its order's id; it may arrive before the order (another topic).
        state["captured"][order_key] = state["captured"].get(order_key, 0) + data["amount"]["amount"]
    return True


def csv_text(state):
    rows = {}
    for key, order in state["orders"].items():
        if order["status"] not in SOLD:
            continue
        row = rows.setdefault((order["day"], order["currency"]), {"orders": 0, "revenue": 0, "captured": 0})
        row["orders"] += 1
        row["revenue"] += order["total"] - order["refunded"]
        row["captured"] += state["captured"].get(key, 0)
    lines = [["day", "currency", "orders", "revenue", "captured"]]
    for (day, currency), row in sorted(rows.items()):
        lines.append([day, currency, row["orders"], row["revenue"], row["captured"]])
    out = []
    for line in lines:
        out.append(",".join(str(v) for v in line))
    return "\n".join(out) + "\n"


def caught_up(consumer, assignment):
    """Whether this member holds partitions and has read each to its end. A partition this
    member has consumed nothing from yet stands where the group committed (its position is
    unknown until a message comes)."""
    if not assignment:
        return False
    positions = consumer.position(assignment)
    committed = {(c.topic, c.partition): c.offset for c in consumer.committed(assignment, timeout=5)}
    for p in positions:
        at = p.offset if p.offset >= 0 else committed.get((p.topic, p.partition), -1)
        low, high = consumer.get_watermark_offsets(p, timeout=5)
        if high > max(at, low):
            return False
    return True


def main():
    parser = argparse.ArgumentParser(description="daily sales export from the shop's topics")
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--contract", required=True, help="the AsyncAPI document (worker-kit/contract/asyncapi.json)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--prefix", default="shop")
    parser.add_argument("--group", default="daily-sales")
    parser.add_argument("--exit-when-idle", type=float, default=0, help="stop once every partition is read to its end and no message came for this many seconds")
    parser.add_argument("--pace", type=float, default=0, help="sleep this long per message (to watch it work)")
    parser.add_argument("--batch", type=int, default=100, help="messages applied between writes and commits")
    args = parser.parse_args()

    checks = validators(args.contract)
    state = load_state(args.state)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Small fetches: some brokers (tansu) answer large ones too slowly for the client.
        "max.partition.fetch.bytes": 262144,
        # A member that died (kill -9) is given up after 6 s, so its partitions move on.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 2000,
    })
    assignment = []
    consumer.subscribe(
        [f"{args.prefix}.order.v1", f"{args.prefix}.payment.v1"],
        on_assign=lambda c, partitions: assignment.__setitem__(slice(None), partitions),
        on_revoke=lambda c, partitions: assignment.clear(),
    )
    idle_since = time.monotonic()
    try:
        while True:
            batch = consumer.consume(num_messages=args.batch, timeout=0.5)
            if not batch:
                idle = time.monotonic() - idle_since
                if args.exit_when_idle and idle > args.exit_when_idle and caught_up(consumer, assignment):
                    return 0
                continue
            idle_since = time.monotonic()
            for message in batch:
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise SystemExit(f"kafka: {message.error()}")
                envelope = json.loads(message.value())
                check = checks.get(envelope.get("type"))
                if check is None:
                    raise SystemExit(f"message {envelope.get('id')}: type {envelope.get('type')!r} is not in the contract")
                errors = sorted(check.iter_errors(envelope), key=lambda e: e.path)
                if errors:
                    raise SystemExit(f"message {envelope['id']} ({envelope['type']}) breaks the contract: {errors[0].message}")
                apply(state, envelope)
                if args.pace:
                    time.sleep(args.pace)
            # Our write first (state, then the export), then the offsets.
            write_atomically(args.state, json.dumps(state))
            write_atomically(args.out, csv_text(state))
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
