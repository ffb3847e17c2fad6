#!/usr/bin/env python3
"""OPTIONS probes to a SIP node at a fixed interval, as a monitoring system sends them.

  options-probe.py --target 127.0.0.1:26060 --source 127.0.0.2 --interval 0.5 --duration 70

Each probe is a new OPTIONS (own Call-ID and branch) sent on schedule whatever happened to
the others; answers are matched by Call-ID. Prints one line: probes sent, answered at all,
answered within --timeout seconds (and that share), and the answer times (median, 99th
percentile, worst) in milliseconds. Exit status 0 whatever the result: the
caller judges it. Bounded: --duration / --interval probes.
"""
import argparse
import socket
import time
import uuid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=0.2)
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.source, 0))
    local = "%s:%d" % sock.getsockname()
    count = max(1, int(args.duration / args.interval))
    pending = {}  # call id -> time sent
    times = []
    start = time.monotonic()
    sent = 0
    # Bounded: count probes, then one last second for late answers.
    while sent < count or (pending and time.monotonic() < start + count * args.interval + 1.0):
        now = time.monotonic()
        if sent < count and now >= start + sent * args.interval:
            call_id = uuid.uuid4().hex
            request = (
                f"OPTIONS sip:{args.target} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{call_id};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{args.source}>;tag={sent}\r\n"
                f"To: <sip:{args.target}>\r\n"
                f"Call-ID: {call_id}\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            pending[call_id] = now
            sock.sendto(request, target)
            sent += 1
            continue
        next_send = start + sent * args.interval if sent < count else now + 0.05
        sock.settimeout(max(0.001, min(next_send, start + count * args.interval + 1.0) - now))
        try:
            data, _ = sock.recvfrom(65536)
        except socket.timeout:
            continue
        if not data.startswith(b"SIP/2.0 2"):
            continue
        for line in data.split(b"\r\n"):
            if line.lower().startswith(b"call-id:"):
                call_id = line.split(b":", 1)[1].strip().decode(errors="replace")
                sent_at = pending.pop(call_id, None)
                if sent_at is not None:
                    times.append((time.monotonic() - sent_at) * 1000)
    times.sort()
    answered = len(times)
    in_time = sum(1 for t in times if t <= args.timeout * 1000)

    def pct(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))] if times else float("nan")

    print(
        f"probes {sent} answered {answered}, within {args.timeout * 1000:.0f} ms {in_time} "
        f"({100.0 * in_time / sent:.1f}%); p50 {pct(0.5):.1f} ms p99 {pct(0.99):.1f} ms "
        f"max {times[-1] if times else float('nan'):.1f} ms"
    )


if __name__ == "__main__":
    main()
