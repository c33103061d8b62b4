"""Sends metrics with the real client libraries, for the metrics integration tests.

`metrics_emit.py [--emf HOST:PORT] [--statsd HOST:PORT]`
- `--emf`: three EMF documents from `aws-embedded-metrics` in agent mode over TCP
  (`AWS_EMF_ENVIRONMENT=Default`): namespace `Real/EMF`, dimension `Service=real`, metric
  `Latency` (Milliseconds) = 10, 20, 30 — plus one with `Payload` = [1, 2, 2] (Bytes).
- `--statsd`: the `statsd` package's client over UDP: `orders` +3 and +1 (counter), `lat` 12 ms
  twice (timer), `temp` 5 then +2 (gauge), `users` a, b, a (set).
Prints nothing on success; exits non-zero on any error.
"""

import argparse
import asyncio
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emf")
    parser.add_argument("--statsd")
    args = parser.parse_args()
    if args.emf:
        # The client reads its configuration when first imported.
        os.environ["AWS_EMF_AGENT_ENDPOINT"] = f"tcp://{args.emf}"
        os.environ["AWS_EMF_ENVIRONMENT"] = "Default"
        os.environ["AWS_EMF_SERVICE_NAME"] = "real"
        from aws_embedded_metrics import metric_scope

        @metric_scope
        async def emit(value, metrics):
            metrics.set_namespace("Real/EMF")
            metrics.set_dimensions({"Service": "real"})
            metrics.put_metric("Latency", value, "Milliseconds")

        @metric_scope
        async def emit_many(metrics):
            metrics.set_namespace("Real/EMF")
            metrics.set_dimensions({"Service": "real"})
            for value in (1, 2, 2):
                metrics.put_metric("Payload", value, "Bytes")

        for value in (10, 20, 30):
            asyncio.run(emit(value))
        asyncio.run(emit_many())
    if args.statsd:
        import statsd

        host, port = args.statsd.rsplit(":", 1)
        client = statsd.StatsClient(host, int(port))
        client.incr("orders", 3)
        client.incr("orders")
        client.timing("lat", 12)
        client.timing("lat", 12)
        client.gauge("temp", 5)
        client.gauge("temp", 2, delta=True)
        for user in ("a", "b", "a"):
            client.set("users", user)
    return 0


if __name__ == "__main__":
    sys.exit(main())
