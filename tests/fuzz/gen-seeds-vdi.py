#!/usr/bin/env python3
"""Writes the seed corpora of fuzz-chunk and fuzz-agent-msg.

Each seed is two control bytes (how the fuzz target slices the input, and the piece
limit / check flags) followed by a guest port stream (fuzz-chunk) or an agent message
stream (fuzz-agent-msg). Byte values come from peers.md and agent-protocol.md (real
spice-vdagentd, spice-gtk and libspice-server bytes). Run from anywhere:

    tests/fuzz/gen-seeds-vdi.py

Existing seeds of the same name are overwritten; other files are left alone.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def chunk(port, payload, size=None):
    return struct.pack("<II", port, len(payload) if size is None else size) + payload


def msg(mtype, payload=b"", protocol=1, opaque=0, size=None):
    n = len(payload) if size is None else size
    return struct.pack("<IIQI", protocol, mtype, opaque, n) + payload


def chunks_of(port, data, n):
    return b"".join(chunk(port, data[i:i + n]) for i in range(0, len(data), n))


def fill(n, k=7):
    return bytes((i * k + 3) & 0xFF for i in range(n))


# VD_AGENT_* types
MOUSE_STATE, MONITORS_CONFIG, REPLY, CLIPBOARD, DISPLAY_CONFIG, CAPS = 1, 2, 3, 4, 5, 6
GRAB, REQUEST, RELEASE, XFER_START, XFER_STATUS, XFER_DATA = 7, 8, 9, 10, 11, 12
CLIENT_DISCONNECTED, MAX_CLIPBOARD, AUDIO_VOLUME_SYNC, GRAPHICS_DEVICE_INFO = 13, 14, 15, 16

# peers.md 4.2: spice-vdagentd 0.22.1 announces 0x00038de7 with request=1 on open
VDAGENTD_CAPS = msg(CAPS, struct.pack("<II", 1, 0x00038DE7))
VDAGENTD_CAPS_REPLY = msg(CAPS, struct.pack("<II", 0, 0x00038DE7))
# peers.md 1: spice-gtk 0.42 announces 0x00035077
SPICE_GTK_CAPS = msg(CAPS, struct.pack("<II", 1, 0x00035077))
# agent-protocol.md 4.5: the reference's CLIENT_DISCONNECTED on port 2
CLIENT_DISC = msg(CLIENT_DISCONNECTED)
MOUSE = msg(MOUSE_STATE, struct.pack("<IIIB", 10, 20, 2, 0))
MON = struct.pack("<IIIii", 768, 1024, 32, 0, 0)
MONITORS = msg(MONITORS_CONFIG, struct.pack("<II", 1, 2) + MON + struct.pack("<HH", 300, 600))
MONITORS_BAD = msg(MONITORS_CONFIG, struct.pack("<II", 2, 0) + MON)
ADDR = b"pci/0000/02.0\0"
GDI = msg(GRAPHICS_DEVICE_INFO,
          struct.pack("<IIIII", 1, 0, 0, 0, len(ADDR)) + ADDR)
GDI_EMPTY = msg(GRAPHICS_DEVICE_INFO, struct.pack("<I", 0))
XFER_TEXT = b"[vdagent-file-xfer]\nname=a.txt\nsize=3\n\0"
XFER = (msg(XFER_START, struct.pack("<I", 1) + XFER_TEXT) +
        msg(XFER_STATUS, struct.pack("<II", 1, 0)) +
        msg(XFER_DATA, struct.pack("<IQ", 1, 3) + b"abc") +
        msg(XFER_STATUS, struct.pack("<II", 1, 3)))
CLIPBOARD_FLOW = (msg(GRAB, struct.pack("<BxxxII", 0, 7, 1)) +
                  msg(REQUEST, struct.pack("<BxxxI", 0, 1)) +
                  msg(CLIPBOARD, struct.pack("<BxxxI", 0, 1) + b"hello") +
                  msg(RELEASE, struct.pack("<Bxxx", 0)))
AUDIO = msg(AUDIO_VOLUME_SYNC, struct.pack("<BBBHH", 1, 0, 2, 0xFFFF, 0x8000))
MISC = (msg(REPLY, struct.pack("<II", MONITORS_CONFIG, 1)) +
        msg(DISPLAY_CONFIG, struct.pack("<II", 0, 32)) +
        msg(MAX_CLIPBOARD, struct.pack("<i", -1)))

CHUNK_SEEDS = {
    "vdagentd-caps": b"\x07\x00" + chunk(1, VDAGENTD_CAPS),
    "vdagentd-caps-bytewise": b"\x00\x01" + chunk(1, VDAGENTD_CAPS),
    "server-client-disconnected": b"\x03\x05" + chunk(2, CLIENT_DISC),
    "size-zero-run": b"\x02\x00" + chunk(1, b"") + chunk(2, b"") + chunk(1, b"\xaa"),
    "size-2048": b"\x06\x05" + chunk(1, fill(2048)),
    "size-2049": b"\x0e\x05" + chunk(1, fill(2049)) + chunk(2, CLIENT_DISC),
    "clipboard-3000-one-chunk": b"\x2f\x05" + chunk(1, msg(CLIPBOARD, b"\1\0\0\0" + fill(2996))),
    "seven-byte-chunks": b"\x04\x02" + chunks_of(1, VDAGENTD_CAPS + MOUSE, 7),
    "size-max-open": b"\x05\x06" + chunk(1, fill(64), size=0xFFFFFFFF),
    "bad-port-3": b"\x01\x00" + chunk(1, b"\x11\x22") + chunk(3, b"\x99"),
    "bad-port-0": b"\x07\x07" + chunk(0, b"\xde\xad\xbe\xef"),
    "graphics-device-info": b"\x0b\x04" + chunk(2, GDI),
    "partial-header": b"\x07\x00" + chunk(1, b"\x01\x02")[:6],
    # found by the fuzzer (a model bug): the stream ends right after a header
    "header-only": b"\x00\x0d" + struct.pack("<II", 1, 0x003F4E00),
}

AGENT_SEEDS = {
    "vdagentd-caps": b"\x07\x00" + VDAGENTD_CAPS,
    "vdagentd-caps-reply-split": b"\x03\x03" + VDAGENTD_CAPS_REPLY,
    "spice-gtk-caps": b"\x00\x03" + SPICE_GTK_CAPS,
    "client-disconnected": b"\x05\x00" + CLIENT_DISC + CLIENT_DISC,
    "mouse-state": b"\x06\x00" + MOUSE,
    "monitors-physical": b"\x04\x00" + MONITORS,
    "monitors-truncated": b"\x07\x00" + MONITORS_BAD,
    "graphics-device-info": b"\x02\x00" + GDI + GDI_EMPTY,
    "file-xfer": b"\x06\x00" + XFER,
    "clipboard-selection-serial": b"\x01\x03" + CLIPBOARD_FLOW,
    "audio-volume-sync": b"\x07\x00" + AUDIO,
    "misc": b"\x04\x00" + MISC,
    "clipboard-3000": b"\x06\x00" + msg(CLIPBOARD, b"\1\0\0\0" + fill(2996)),
    "protocol-2": b"\x07\x00" + VDAGENTD_CAPS + msg(CLIENT_DISCONNECTED, protocol=2),
    "size-0-junk": b"\x07\x00" + CLIENT_DISC + b"\xde\xad\xbe\xef",
    "size-max-open": b"\x06\x00" + msg(XFER_DATA, fill(40), size=0xFFFFFFFF),
    "unknown-type": b"\x05\x00" + msg(99, b"\x01\x02", opaque=0x1122334455667788),
}


def write(name, seeds):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for seed, data in seeds.items():
        with open(os.path.join(d, seed), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("fuzz-chunk", CHUNK_SEEDS)
    write("fuzz-agent-msg", AGENT_SEEDS)
