"""A stock gRPC Python client (Debian's python3-grpcio: gRPC's C core and
its xDS resolver) holding channels to xds:///TARGET for the xDS tests.

Usage: xds-client.py TARGET [TARGET...], with GRPC_XDS_BOOTSTRAP set. One
channel per target, all in this process (so gRPC's one xDS client, and its
one ADS stream, carries every target's resources). Reads one JSON request
per stdin line and prints one JSON line per request; "target" is the index
of the channel (default 0), and each channel lives through all requests:
  {"n": calls, "timeout": seconds} -> {"tally": {backend id or error: count}}
  {"until": id, "timeout": seconds, "limit": seconds}
      -> {"calls": n, "ok": bool}: calls back to back until one is
         answered by backend `id` (the bench's push latency probe)
Exits when stdin closes.
"""
import json
import sys
import time

import grpc

WHOAMI = "/canonport.test.Echo/WhoAmI"


def main():
    channels = [grpc.insecure_channel(target) for target in sys.argv[1:]]
    # No serializers: requests and replies are raw bytes (the backend answers "address:port").
    methods = [channel.unary_unary(WHOAMI) for channel in channels]
    for line in sys.stdin:
        req = json.loads(line)
        who_am_i = methods[int(req.get("target", 0))]
        if "until" in req:
            deadline = time.monotonic() + float(req["limit"])
            calls, ok = 0, False
            while time.monotonic() < deadline:
                calls += 1
                try:
                    if who_am_i(b"", timeout=float(req["timeout"])).decode() == req["until"]:
                        ok = True
                        break
                except grpc.RpcError:
                    pass
            print(json.dumps({"calls": calls, "ok": ok}), flush=True)
            continue
        tally = {}
        for _ in range(int(req["n"])):
            try:
                key = who_am_i(b"", timeout=float(req["timeout"])).decode()
            except grpc.RpcError as err:
                key = "error:" + err.code().name
            tally[key] = tally.get(key, 0) + 1
        print(json.dumps({"tally": tally}), flush=True)
    for channel in channels:
        channel.close()


if __name__ == "__main__":
    main()
