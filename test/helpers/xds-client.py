"""A stock gRPC Python client (Debian's python3-grpcio: gRPC's C core and
its xDS resolver) holding one channel to xds:///TARGET for the xDS tests.

Usage: xds-client.py TARGET, with GRPC_XDS_BOOTSTRAP set. Reads one JSON
request per stdin line, {"n": calls, "timeout": seconds}, makes that many
WhoAmI calls on the same channel and prints one JSON line: {"tally":
{backend id or error code: count}}. Exits when stdin closes.
"""
import json
import sys

import grpc

WHOAMI = "/canonport.test.Echo/WhoAmI"


def main():
    target = sys.argv[1]
    channel = grpc.insecure_channel(target)
    # No serializers: requests and replies are raw bytes (the backend answers "address:port").
    who_am_i = channel.unary_unary(WHOAMI)
    for line in sys.stdin:
        req = json.loads(line)
        tally = {}
        for _ in range(int(req["n"])):
            try:
                key = who_am_i(b"", timeout=float(req["timeout"])).decode()
            except grpc.RpcError as err:
                key = "error:" + err.code().name
            tally[key] = tally.get(key, 0) + 1
        print(json.dumps({"tally": tally}), flush=True)
    channel.close()


if __name__ == "__main__":
    main()
