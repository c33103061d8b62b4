"""Sends StatsD metrics with the real `statsd` client (pipelined, as busy applications do).

`statsd_emit.py HOST:PORT --count N`: N increments of `hits` (tag-less), the gauge `temp` set to
0..N-1 in order (last value N-1), and N timings of `lat` cycling through 10, 20, 30 ms.
Prints nothing on success; exits non-zero on any error.
"""

import argparse

import statsd


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("--count", type=int, default=10000)
    args = parser.parse_args()
    host, port = args.address.rsplit(":", 1)
    client = statsd.StatsClient(host, int(port))
    for start in range(0, args.count, 100):
        with client.pipeline() as pipe:
            for n in range(start, min(start + 100, args.count)):
                pipe.incr("hits")
                pipe.gauge("temp", n)
                pipe.timing("lat", (10, 20, 30)[n % 3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
