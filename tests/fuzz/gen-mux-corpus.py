#!/usr/bin/env python3
"""Writes the seed corpora of fuzz-mux-guest and fuzz-mux-client (see
fuzz-mux-util.h for the input format). Run from anywhere; rewrites the files."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def msg(mtype, payload=b"", opaque=0, protocol=1):
    return struct.pack("<IIQI", protocol, mtype, opaque, len(payload)) + payload


def chunk(port, data):
    return struct.pack("<II", port, len(data)) + data


def caps(request, caps0):
    return msg(6, struct.pack("<II", request, caps0))


class Script:
    def __init__(self, conf=0, budgets=0xF0):
        self.b = bytearray([conf, budgets])

    def data(self, data, k=0, other=False):
        """data in the target's direction (or the other one) in <= 256-byte feeds;
        for client data each call is one AGENT_DATA body, so keep it <= 256 or
        use body()."""
        op = (5 if other else 0) | (k << 4)
        for i in range(0, len(data), 256):
            part = data[i:i + 256]
            self.b += bytes([op, len(part) - 1]) + part
        return self

    def body(self, data, k=0, other=False):
        """one AGENT_DATA body of any length up to 4096 (multiple of 16 or
        <= 256)"""
        op = (5 if other else 0) | (k << 4)
        if len(data) <= 256:
            self.b += bytes([op, len(data) - 1]) + data
        else:
            assert len(data) % 16 == 0
            self.b += bytes([op | 0xC0, len(data) // 16 - 1]) + data
        return self

    def op(self, code, k=0, *args):
        self.b += bytes([code | (k << 4)] + list(args))
        return self

    def write(self, n=255):
        return self.op(6, 0, n)

    def pop(self, k=0):
        return self.op(7, k, 255)

    def save(self, target, name):
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "wb") as f:
            f.write(bytes(self.b))



def guest():
    t = "fuzz-mux-guest"
    s = Script()
    s.data(chunk(1, caps(1, 0x38DE7)) + chunk(1, msg(3, struct.pack("<II", 2, 1))))
    s.pop().write().save(t, "caps-and-reply")

    big = msg(4, bytes(range(256)) * 19 + bytes(116))
    Script().data(chunk(1, big)).pop().write().save(t, "chunk-5000")

    m1 = msg(99, bytes(3000))
    m2 = msg(3, struct.pack("<II", 2, 1))
    Script().data(chunk(1, m1[:1500]) + chunk(2, m2) + chunk(1, m1[1500:])).pop() \
        .save(t, "ports-interleaved")

    Script().data(chunk(1, m2 + msg(99, b"x" * 30))).pop().save(t, "two-in-one-chunk")

    Script().data(chunk(3, m2)).op(13).data(chunk(1, m2)).pop().save(t, "bad-port-reconnect")

    Script(conf=3).data(chunk(1, msg(7, struct.pack("<I", 1))) + chunk(1, caps(0, 0x806A))) \
        .pop().save(t, "policy-off")

    s = Script(conf=4 | 8, budgets=0xF3)
    s.data(msg(10, struct.pack("<I", 1) + b"[vdagent-file-xfer]\nname=a\nsize=1\n\0"), k=0,
           other=True)
    s.write()
    s.data(chunk(1, msg(11, struct.pack("<II", 1, 0)))).pop(0).pop(1).save(t, "xfer-multi")

    Script().data(chunk(1, b"") + chunk(2, b"") + chunk(1, m2)).pop().save(t, "zero-chunks")

    Script(budgets=0x01).data(chunk(1, m2) * 6).pop().op(8, 0, 3).pop().save(t, "budget")

    Script().data(chunk(1, msg(99, b"", protocol=2))).op(12).op(13).data(chunk(1, m2)).pop() \
        .save(t, "protocol-2")


def client():
    t = "fuzz-mux-client"
    Script().data(caps(1, 0x35077)).write().data(msg(14, struct.pack("<I", 1 << 20))) \
        .write().pop().save(t, "caps-and-max-clipboard")

    m = msg(4, bytes(3008 - 20))
    Script().body(m[:2048]).body(m[2048:]).write().pop().save(t, "multi-part")

    s = Script(conf=4 | 8)
    a = msg(4, bytes(4096 - 20))
    s.body(a[:2048], k=0).body(msg(14, struct.pack("<I", 5)), k=1).body(a[2048:], k=0)
    s.body(a[:2048], k=1).op(11, 1).write().pop(0).save(t, "interleave-leave")

    Script(conf=2).body(msg(10, struct.pack("<I", 7) + b"name\0")).pop().save(t, "xfer-disabled")

    s = Script(conf=64)
    for _ in range(5):
        s.body(msg(14, struct.pack("<I", 5)))
    s.pop().save(t, "token-violation")

    s = Script()
    s.body(a[:2048]).write().op(12).op(13).pop().op(9, 0, 0xFF).body(a[2048:])
    s.body(msg(14, struct.pack("<I", 5))).write().save(t, "reconnect-continuation")

    s = Script(conf=4 | 8)
    s.body(msg(7, struct.pack("<I", 1)), k=1).write()
    s.data(chunk(1, msg(8, struct.pack("<I", 1))), other=True).pop(0).pop(1)
    s.body(msg(9), k=0).op(11, 1).write().save(t, "clipboard-multi")

    Script().body(msg(99, b"") + b"JUNKJUNK").body(bytes(19)).save(t, "bad-units")

    s = Script(conf=4 | 8)
    s.body(a[:2048], k=0).body(msg(14, struct.pack("<I", 5)), k=1)
    for _ in range(250):
        s.op(14, 0, 255)
    s.write().save(t, "stall")


guest()
client()
