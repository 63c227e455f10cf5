#!/usr/bin/python3
"""One DNS question through dnspython, as a client on another host asks it.

    dns-probe.py SERVER PORT NAME TYPE udp|tcp [PAYLOAD]

Sends the query (EDNS with PAYLOAD octets when given, else none) and prints
one JSON line: the sizes on the wire, TC, the rcode, and every answer
record as dnspython reads it (TXT as its strings, joined and each). A reply
dnspython cannot parse prints {"error": ...} and exits 1: that is the
malformed TXT of issue 21, finding 6.
"""
import json
import socket
import struct
import sys

import dns.flags
import dns.message
import dns.rdatatype

server, port, name, qtype, transport = sys.argv[1:6]
payload = int(sys.argv[6]) if len(sys.argv) > 6 else None
q = dns.message.make_query(name, qtype, use_edns=payload is not None, payload=payload or 512)
wire = q.to_wire()
family = socket.AF_INET6 if ':' in server else socket.AF_INET
if transport == 'udp':
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(wire, (server, int(port)))
    raw, _ = s.recvfrom(65535)
else:
    s = socket.create_connection((server, int(port)), timeout=3)
    s.sendall(struct.pack('!H', len(wire)) + wire)
    head = b''
    while len(head) < 2:
        head += s.recv(2 - len(head))
    (length,) = struct.unpack('!H', head)
    raw = b''
    while len(raw) < length:
        raw += s.recv(length - len(raw))
s.close()
try:
    r = dns.message.from_wire(raw)
except Exception as e:  # noqa: BLE001 - any parse failure is the finding
    print(json.dumps({'error': f'{type(e).__name__}: {e}', 'reply_len': len(raw)}))
    sys.exit(1)
answers = []
for rrset in r.answer:
    for rd in rrset:
        if rrset.rdtype == dns.rdatatype.TXT:
            strings = [b.decode('utf-8', 'replace') for b in rd.strings]
            answers.append({'type': 'TXT', 'strings': strings, 'text': ''.join(strings)})
        else:
            answers.append({'type': dns.rdatatype.to_text(rrset.rdtype), 'text': rd.to_text()})
print(json.dumps({
    'query_len': len(wire),
    'reply_len': len(raw),
    'tc': bool(r.flags & dns.flags.TC),
    'rcode': r.rcode(),
    'answers': answers,
}))
