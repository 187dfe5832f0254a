#!/usr/bin/env python3
"""Memory probes of passion-server from outside, as the connection-core issue measured them.

  connections.py churn  --rounds 4 --count 1000        TLS + HELLO, close; RSS after each round
  connections.py anon   --rounds 4 --calls 50          anonymous calls sending 4 MiB unfinished
  connections.py slow   --count 100                    calls trickling a byte every few seconds

Prints the server's RSS (from /proc/PID/status) before and after each round. Needs the server's
pid (--pid) and address (--host, --port); trusts --ca (default .passion/tls/ca.pem).
"""
import argparse, socket, ssl, struct, time, os, sys

PREFACE = b"PASSION\x01"
SETTINGS = [(1, 1), (2, 65536), (3, 4194304), (4, 1024), (5, 16384), (6, 0), (7, 1024), (8, 1000), (9, 0), (10, 1), (11, 1048576)]

def frame(ftype, flags, call_id, payload=b""):
    return struct.pack(">IBBI", len(payload), ftype, flags, call_id) + payload

def hello():
    return frame(1, 0, 0, b"".join(struct.pack(">HQ", i, v) for i, v in SETTINGS))

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1

def connect(args):
    if args.plaintext:
        return socket.create_connection((args.host, args.port), timeout=10)
    context = ssl.create_default_context(cafile=args.ca)
    context.set_alpn_protocols(["passion/1"])
    raw = socket.create_connection((args.host, args.port), timeout=10)
    conn = context.wrap_socket(raw, server_hostname=args.host)
    return conn

def read_frame(conn):
    head = b""
    while len(head) < 10:
        chunk = conn.recv(10 - len(head))
        if not chunk:
            return None
        head += chunk
    length, ftype, flags, call_id = struct.unpack(">IBBI", head)
    payload = b""
    while len(payload) < length:
        chunk = conn.recv(length - len(payload))
        if not chunk:
            return None
        payload += chunk
    return ftype, flags, call_id, payload

def call_frame(call_id, method, metadata=(), flags=0, message=None):
    m = method.encode()
    md = struct.pack(">H", len(metadata)) + b"".join(
        struct.pack(">B", len(k)) + k.encode() + struct.pack(">H", len(v)) + v.encode() for k, v in metadata)
    payload = struct.pack(">H", len(m)) + m + struct.pack(">Q", 0) + md
    if message is not None:
        payload += message
        flags |= 0x02
    return frame(2, flags, call_id, payload)

def churn(args):
    for _ in range(args.count):
        try:
            conn = connect(args)
            conn.sendall(PREFACE + hello())
            read_frame(conn)
            conn.close()
        except OSError as error:
            print("connect failed:", error, file=sys.stderr)

def anon(args):
    conns = []
    refused = 0
    for _ in range(args.connections):
        conn = connect(args)
        conn.sendall(PREFACE + hello())
        read_frame(conn)
        chunk = b"\x00" * 60000
        try:
            for call in range(1, 2 * args.calls + 1, 2):
                conn.sendall(call_frame(call, args.method))
                sent = 0
                while sent < args.bytes:
                    conn.sendall(frame(3, 0x08, call, chunk))
                    sent += len(chunk)
        except OSError:
            refused += 1  # the server closed the connection (GOAWAY ENHANCE_YOUR_CALM, then close)
        conns.append(conn)
    if refused:
        print(f"  {refused} connection(s) closed by the server mid-attack", flush=True)
    time.sleep(args.hold)
    for conn in conns:
        conn.close()

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["churn", "anon"])
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7443)
    parser.add_argument("--ca", default=".passion/tls/ca.pem")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--bytes", type=int, default=4 * 1024 * 1024 - 100000)
    parser.add_argument("--hold", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--plaintext", action="store_true")
    parser.add_argument("--method", default="passion.v1.Diagnostics/EchoStream")
    args = parser.parse_args()
    print(f"start: {rss_kib(args.pid) / 1024:.1f} MiB")
    for round in range(args.rounds):
        (churn if args.mode == "churn" else anon)(args)
        time.sleep(args.settle)
        print(f"after round {round + 1}: {rss_kib(args.pid) / 1024:.1f} MiB", flush=True)

if __name__ == "__main__":
    main()
