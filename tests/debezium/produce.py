"""Debezium-shaped change events of a `customers` table, produced with Confluent's own Avro
serializer (confluent-kafka's AvroSerializer and SchemaRegistryClient), as Debezium's
AvroConverter writes them: the envelope (`before`, `after`, `op`, `ts_ms`) in the Confluent
wire format, its schema registered under `<topic>-value`; the key (the row's primary key, a
record `Key` of `id`) likewise under `<topic>-key`, as with `key.converter` AvroConverter.

Usage: produce.py BOOTSTRAP REGISTRY_URL TOPIC CUSTOMERS

Customer i (1..CUSTOMERS) is read by the snapshot (`r`); the even ones are then updated
(`u`, a new email); every third is then deleted (`d`, `after` null) and followed by its tombstone
(the key, no value). Prints one line per kind with its count.
"""

import decimal
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

ENVELOPE = """
{
  "type": "record", "name": "Envelope", "namespace": "dbserver1.inventory.customers",
  "fields": [
    {"name": "before", "type": ["null", {
      "type": "record", "name": "Value",
      "fields": [
        {"name": "id", "type": "int"},
        {"name": "first_name", "type": "string"},
        {"name": "last_name", "type": "string"},
        {"name": "email", "type": "string"},
        {"name": "balance", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "born", "type": {"type": "int", "logicalType": "date"}}
      ]}], "default": null},
    {"name": "after", "type": ["null", "Value"], "default": null},
    {"name": "op", "type": "string"},
    {"name": "ts_ms", "type": ["null", "long"], "default": null}
  ]
}
"""


KEY = """
{
  "type": "record", "name": "Key", "namespace": "dbserver1.inventory.customers",
  "fields": [{"name": "id", "type": "int"}]
}
"""


def customer(i, email):
    return {
        "id": i,
        "first_name": f"first{i}",
        "last_name": f"last{i}",
        "email": email,
        "balance": decimal.Decimal(f"{i}.25"),
        "born": 7000 + i,
    }


def main():
    bootstrap, registry, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    registry = SchemaRegistryClient({"url": registry})
    serializer = AvroSerializer(registry, ENVELOPE)
    key_serializer = AvroSerializer(registry, KEY)
    producer = Producer({"bootstrap.servers": bootstrap})
    context = SerializationContext(topic, MessageField.VALUE)
    key_context = SerializationContext(topic, MessageField.KEY)

    def key(i):
        return key_serializer({"id": i}, key_context)

    ts = 1_767_225_600_000
    counts = {"r": 0, "u": 0, "d": 0, "tombstones": 0}

    def send(i, event):
        nonlocal ts
        ts += 1
        event["ts_ms"] = ts
        producer.produce(topic, key=key(i), value=serializer(event, context))
        counts[event["op"]] += 1

    for i in range(1, count + 1):
        send(i, {"before": None, "after": customer(i, f"c{i}@example.com"), "op": "r"})
    for i in range(2, count + 1, 2):
        old, new = customer(i, f"c{i}@example.com"), customer(i, f"new{i}@example.com")
        send(i, {"before": old, "after": new, "op": "u"})
    for i in range(3, count + 1, 3):
        email = f"new{i}@example.com" if i % 2 == 0 else f"c{i}@example.com"
        send(i, {"before": customer(i, email), "after": None, "op": "d"})
        # Debezium's tombstones.on.delete (default true): the key alone, for compaction.
        producer.produce(topic, key=key(i), value=None)
        counts["tombstones"] += 1
    if producer.flush(30) != 0:
        sys.exit("produce.py: some events were not acknowledged")
    for op, n in counts.items():
        print(f"{op} {n}")


if __name__ == "__main__":
    main()
