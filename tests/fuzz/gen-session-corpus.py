#!/usr/bin/env python3
"""Writes the seed corpus of fuzz-session (see the comment at the top of
fuzz-session.c for the input format): valid sessions with mini and full headers,
and the hostile cases of security.md section 2.4 (L1-L4, M1-M6). Run from
anywhere; rewrites the files."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz-session")

# byte 0
MINI, AUTHSEL, GUEST, CTOKENS, TALKS, KEEPALIVE, SMALL, RAW = (1 << i for i in range(8))
# byte 1: split mode | p << 2
WHOLE, FIXED, BYTEWISE, RANDOM = range(4)
# byte 2: time step index | events
FLAPS, SLOW_GUEST, LAZY, REFUSE, POLICY_OFF = (1 << i for i in range(3, 8))
# byte 3
PUSHY_GUEST, DEAF, CLOSE = 1, 2, 4

# client -> server main-channel types (spice/enums.h)
ACK_SYNC, ACK, PONG, MIGRATE_FLUSH_MARK, MIGRATE_DATA, DISCONNECTING = 1, 2, 3, 4, 5, 6
CLIENT_INFO = 101
MIGRATE_CONNECTED, MIGRATE_CONNECT_ERROR, ATTACH_CHANNELS = 102, 103, 104
MOUSE_MODE_REQUEST, AGENT_START, AGENT_DATA, AGENT_TOKEN = 105, 106, 107, 108
MIGRATE_END, MIGRATE_DST_DO_SEAMLESS, MIGRATE_CONNECTED_SEAMLESS = 109, 110, 111
QUALITY_INDICATOR = 112

# VDAgentMessage types
VD_MONITORS_CONFIG, VD_REPLY, VD_CLIPBOARD, VD_CAPS, VD_GRAB = 2, 3, 4, 6, 7
VD_FILE_XFER_START, VD_CLIENT_DISCONNECTED = 10, 13


def agent(mtype, payload=b"", protocol=1, size=None):
    if size is None:
        size = len(payload)
    return struct.pack("<IIQI", protocol, mtype, 0, size) + payload


class Client:
    """The client's main-channel byte stream after the handshake."""

    def __init__(self, mini):
        self.mini = mini
        self.serial = 0
        self.b = bytearray()

    def raw_header(self, mtype, size):
        self.serial += 1
        if self.mini:
            self.b += struct.pack("<HI", mtype, size)
        else:
            self.b += struct.pack("<QHII", self.serial, mtype, size, 0)
        return self

    def msg(self, mtype, body=b""):
        self.raw_header(mtype, len(body))
        self.b += body
        return self

    def u32(self, mtype, v):
        return self.msg(mtype, struct.pack("<I", v))

    def start(self, tokens):
        return self.u32(AGENT_START, tokens)

    def token(self, tokens):
        return self.u32(AGENT_TOKEN, tokens)

    def data(self, message):
        """an agent message as AGENT_DATA bodies of at most 2048 bytes"""
        for i in range(0, len(message), 2048):
            self.msg(AGENT_DATA, message[i:i + 2048])
        return self

    def bytes(self):
        return bytes(self.b)


def link(common, main_caps, major=2, size=None, channel=1, ncommon=1, nmain=1,
         caps_offset=18, conn_id=0):
    body = struct.pack("<IBBIII", conn_id, channel, 0, ncommon, nmain, caps_offset)
    body += struct.pack("<II", common, main_caps)
    if size is None:
        size = len(body)
    return b"REDQ" + struct.pack("<III", major, 2, size) + body


def save(name, conf, split, events, stream, more=0):
    os.makedirs(OUT, exist_ok=True)
    data = bytes([conf, split, events, more]) + stream
    assert len(data) <= 8192, name
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


CAPS_MSG = agent(VD_CAPS, struct.pack("<II", 1, 0x38DE7))
CLIP_3000 = agent(VD_CLIPBOARD, struct.pack("<I", 1) + bytes(range(256)) * 11 + bytes(180))
CLIP_600 = agent(VD_CLIPBOARD, struct.pack("<I", 1) + bytes(range(200)) * 3)
GRAB = agent(VD_GRAB, struct.pack("<I", 1))
FILE_START = agent(VD_FILE_XFER_START, struct.pack("<I", 7) + b"[vdagent-file-xfer]\nname=a\nsize=3\n\0")


def valid(mini):
    c = Client(mini)
    c.start(10).data(CAPS_MSG).data(GRAB).data(CLIP_3000).token(3)
    c.msg(ATTACH_CHANNELS).msg(PONG, struct.pack("<IQ", 1, 5))
    c.msg(MOUSE_MODE_REQUEST, struct.pack("<H", 1)).msg(ACK_SYNC, struct.pack("<I", 1))
    c.msg(MIGRATE_CONNECTED).msg(MIGRATE_DST_DO_SEAMLESS, struct.pack("<I", 1))
    return c.bytes()


def main():
    talk = GUEST | TALKS | AUTHSEL
    # valid sessions, mini and full, in several splits
    for mini, tag in ((True, "mini"), (False, "full")):
        conf = talk | CTOKENS | (MINI if mini else 0)
        s = valid(mini)
        save(f"valid-{tag}", conf, WHOLE, 0, s)
        save(f"valid-{tag}-bytewise", conf, BYTEWISE, 2, s)
        save(f"valid-{tag}-fixed-50", conf, FIXED | (7 << 2), 1, s)
        save(f"valid-{tag}-random", conf, RANDOM | (20 << 2), 3, s)
        save(f"valid-{tag}-no-ctokens-no-authsel", conf & ~(CTOKENS | AUTHSEL), WHOLE, 0, s)
        save(f"valid-{tag}-lazy-slow", conf | SMALL, RANDOM | (9 << 2), LAZY | SLOW_GUEST, s)
        save(f"valid-{tag}-flaps", conf, FIXED | (4 << 2), 3 | FLAPS, s)

    # raw mode: the client's own link, as spice-gtk sends it (AUTH_SELECTION, SASL, MINI)
    gtk = link(0x0D, 0x0F) + struct.pack("<I", 1) + bytes(128)
    save("raw-spice-gtk", RAW | GUEST | TALKS, WHOLE, 0, gtk + valid(True))
    save("raw-spice-gtk-split", RAW | GUEST | TALKS, RANDOM | (6 << 2), 2, gtk + valid(True))
    save("raw-full-no-authsel", RAW | GUEST, WHOLE, 0,
         link(0x02, 0x02) + bytes(128) + valid(False))
    save("raw-no-caps", RAW | GUEST, WHOLE, 0,
         link(0, 0, ncommon=0, nmain=0, size=18)[:34] + bytes(128) + valid(False))

    # L1-L3: link refused
    save("L1-size-0", RAW, WHOLE, 0, link(0x0B, 0x06, size=0))
    save("L1-size-17", RAW, WHOLE, 0, link(0x0B, 0x06, size=17))
    save("L1-size-4097", RAW, WHOLE, 0, link(0x0B, 0x06, size=4097))
    save("L1-size-aaaaaaaa", RAW, BYTEWISE, 0, link(0x0B, 0x06, size=0xAAAAAAAA) + bytes(64))
    save("L2-caps-1025", RAW, WHOLE, 0, link(0x0B, 0x06, ncommon=1025))
    save("L2-caps-wrap", RAW, WHOLE, 0, link(0x0B, 0x06, ncommon=0x80000000, nmain=0x80000000))
    save("L2-caps-offset-10", RAW, WHOLE, 0, link(0x0B, 0x06, caps_offset=10))
    save("L2-caps-past-end", RAW, WHOLE, 0, link(0x0B, 0x06, caps_offset=22))
    save("L3-bad-magic", RAW, BYTEWISE, 0, b"REDX" + link(0x0B, 0x06)[4:])
    save("L3-major-1", RAW, WHOLE, 0, link(0x0B, 0x06, major=1))
    save("L3-major-0", RAW, WHOLE, 0, link(0x0B, 0x06, major=0))
    save("L3-display-channel", RAW, WHOLE, 0, link(0x0B, 0x06, channel=2))
    save("L3-connection-id", RAW | GUEST, WHOLE, 0,
         link(0x0B, 0x06, conn_id=0x1234) + struct.pack("<I", 1) + bytes(128) +
         valid(True))
    save("L4-sasl-mech", RAW, WHOLE, 0, link(0x0D, 0x0F) + struct.pack("<I", 2) + bytes(128))
    save("L4-short-ticket", RAW, FIXED | (3 << 2), 0,
         link(0x0B, 0x06) + struct.pack("<I", 1) + bytes(100))
    save("L4-refused", talk | MINI, WHOLE, REFUSE, valid(True))
    save("L4-handshake-timeout", RAW, BYTEWISE, 6, link(0x0B, 0x06) + bytes(64))

    for mini, tag in ((True, "mini"), (False, "full")):
        conf = talk | CTOKENS | (MINI if mini else 0)

        def c():
            return Client(mini)

        # M1: non-agent messages over their receive buffer, and types that close
        save(f"M1-attach-26625-{tag}", conf, WHOLE, 0,
             c().start(10).raw_header(ATTACH_CHANNELS, 26625).bytes() + bytes(200))
        save(f"M1-attach-26624-{tag}", conf, FIXED | (40 << 2), 0,
             c().start(10).msg(ATTACH_CHANNELS, bytes(26624 - 4096)).bytes()[:4000])
        save(f"M1-client-info-{tag}", conf, WHOLE, 0,
             c().start(10).msg(CLIENT_INFO, struct.pack("<Q", 1)).msg(ATTACH_CHANNELS).bytes())
        save(f"M1-client-info-then-data-{tag}", conf, WHOLE, 0,
             c().start(10).data(CAPS_MSG).msg(CLIENT_INFO, struct.pack("<Q", 1))
             .data(GRAB).bytes())
        save(f"M1-unknown-type-{tag}", conf, WHOLE, 0,
             c().start(10).msg(ATTACH_CHANNELS).msg(200, b"xy").bytes())
        save(f"M1-pong-short-{tag}", conf, WHOLE, 0, c().msg(PONG, bytes(11)).bytes())

        # M2: huge AGENT_DATA sizes, refused at the header
        for size in (0xFFFFFFF8, 0xFFFFFFFF, 0x80000000, 0x7FFFFFF8, 2049):
            s = c().start(10).raw_header(AGENT_DATA, size).bytes() + b"A" * 512
            save(f"M2-agent-data-{size:x}-{tag}", conf, WHOLE, 0, s)
        save(f"M2-agent-data-fffffff8-bytewise-{tag}", conf, BYTEWISE, 0,
             c().start(10).raw_header(AGENT_DATA, 0xFFFFFFF8).bytes() + b"A" * 64)

        # M3: AGENT_DATA of size 0, and 1..19 on a fresh message
        save(f"M3-agent-data-0-{tag}", conf, WHOLE, 0,
             c().start(10).raw_header(AGENT_DATA, 0).bytes() + b"A" * 40)
        save(f"M3-agent-data-19-{tag}", conf, WHOLE, 0,
             c().start(10).msg(AGENT_DATA, CAPS_MSG[:19]).bytes())
        save(f"M3-protocol-2-{tag}", conf, WHOLE, 0,
             c().start(10).data(agent(VD_CAPS, struct.pack("<II", 1, 1), protocol=2)).bytes())
        save(f"M3-past-message-end-{tag}", conf, WHOLE, 0,
             c().start(10).msg(AGENT_DATA, GRAB + b"extra").bytes())

        # M4: AGENT_DATA before AGENT_START, then the same after it
        save(f"M4-data-before-start-{tag}", conf, WHOLE, 0,
             c().data(CAPS_MSG).data(CLIP_3000).start(10).data(CAPS_MSG).bytes())
        save(f"M4-half-before-start-{tag}", conf, WHOLE, 0,
             c().msg(AGENT_DATA, CLIP_3000[:2048]).start(10)
             .msg(AGENT_DATA, CLIP_3000[2048:]).data(GRAB).bytes())

        # M5: more AGENT_DATA than the window (4 with SMALL) while the guest is slow
        s = c().start(10)
        for _ in range(7):
            s.data(GRAB)
        save(f"M5-token-violation-{tag}", conf | SMALL, WHOLE, SLOW_GUEST, s.bytes())
        s = c().start(10)
        for _ in range(9):
            s.data(CLIP_600)
        save(f"M5-window-busy-{tag}", conf | SMALL, FIXED | (10 << 2), 0, s.bytes())

        # M6: token overflow, AGENT_START 0 and twice, AGENT_TOKEN before AGENT_START
        save(f"M6-token-overflow-{tag}", conf, WHOLE, 0,
             c().start(0xFFFFFFFE).token(0xFFFFFFFF).token(0xFFFFFFFF).token(0xFFFFFFFF)
             .data(CAPS_MSG).bytes())
        save(f"M6-start-0-{tag}", conf, RANDOM | (15 << 2), 3,
             c().start(0).data(CAPS_MSG).data(GRAB).token(1).bytes())
        save(f"M6-start-twice-{tag}", conf, WHOLE, 0,
             c().start(2).data(CAPS_MSG).start(0xFFFFFFFF).data(CLIP_3000).bytes())
        save(f"M6-token-before-start-{tag}", conf, WHOLE, 0,
             c().token(0xFFFFFFFF).token(5).start(1).data(GRAB).bytes())

    # keepalive: PINGs over time, answered or not
    ka = Client(True).start(0xFFFFFFFF).msg(PONG, struct.pack("<IQ", 1, 0))
    ka.msg(ACK).msg(PONG, struct.pack("<IQ", 2, 0)).data(GRAB)
    # feeds 11 s or 31 s apart (the handshake timeout is 200 s)
    # (the client goes quiet at the end: the last PING times out)
    save("keepalive-pings", talk | MINI | KEEPALIVE, FIXED | (4 << 2), 5, ka.bytes())
    save("keepalive-timeout", talk | MINI | KEEPALIVE, FIXED | (14 << 2), 6, ka.bytes())
    # policy off: file transfer answered by the mux, clipboard dropped
    pol = Client(True).start(10).data(CAPS_MSG).data(FILE_START).data(CLIP_3000)
    save("policy-off", talk | MINI | CTOKENS, WHOLE, POLICY_OFF, pol.bytes())
    save("policy-off-no-ctokens", talk | MINI, FIXED | (5 << 2), POLICY_OFF | FLAPS | 2,
         pol.bytes())
    # no guest: the agent comes and goes
    save("no-guest-flaps", MINI | AUTHSEL | TALKS | CTOKENS, BYTEWISE, FLAPS | 1,
         valid(True))
    # the client disconnects politely
    save("disconnecting", talk | MINI, WHOLE, 0,
         Client(True).start(10).data(GRAB)
         .msg(DISCONNECTING, struct.pack("<QI", 0, 0)).bytes())
    # a runtime that keeps reading the guest although the mux said stop: the client
    # (small limits, not reading) is cut off
    quiet = Client(True).start(0xFFFFFFFF).data(CAPS_MSG).bytes() + \
        Client(True).msg(ACK).bytes() * 40
    save("pushy-guest-deaf-client", talk | MINI | SMALL, FIXED | (2 << 2), 1, quiet,
         PUSHY_GUEST | DEAF)
    save("deaf-client", talk | MINI | CTOKENS, FIXED | (3 << 2), 1, valid(True), DEAF)
    # the server closes the session mid-stream (replaced by a newer client)
    save("server-close", talk | MINI, FIXED | (5 << 2), 1, valid(True), CLOSE)
    save("server-close-handshake", talk, BYTEWISE, 0, valid(False), CLOSE)
    # empty stream after the handshake
    save("handshake-only-mini", talk | MINI, WHOLE, 0, b"")
    save("handshake-only-full-bytewise", talk, BYTEWISE, 0, b"")


if __name__ == "__main__":
    main()
