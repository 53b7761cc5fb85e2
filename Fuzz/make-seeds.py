#!/usr/bin/env python3
"""Writes the hand-made seed corpus, Fuzz/corpus/<target>/<name>.

Each seed is a header in the target's layout (see the top of each
Fuzz/<target>.swift), a chunk plan (count byte, then one length byte per
read; 0 = the rest) and the stream. Run it again after changing a layout;
the files are committed so `make fuzz` needs no Python.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# Indices into Support.swift's maxLengthChoices and delimiterChoices.
MAX = {0: 0, 1: 1, 2: 2, 3: 3, 5: 4, 8: 5, 16: 6, 100: 7, 255: 8, 16384: 9, 99999: 10, "max": 11}
DELIM = {b"\r\n": 0, b"\n": 1, b"\0": 2, b"aab": 3, b"abab": 4, b"\r\n\r\n": 5, b"xyzxy": 6, b"aaaa": 7}


def plan(*lengths):
    return bytes([len(lengths)] + list(lengths))


def ops(*pairs):
    out = bytes([len(pairs)])
    for kind, arg in pairs:
        out += bytes([kind, arg])
    return out


def write(target, name, data):
    directory = os.path.join(ROOT, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def lines():
    def head(delim=b"\r\n", limit=16384, on_long=0, raw_mask=0, raw_len=255):
        return bytes([DELIM[delim] | MAX[limit] << 3, on_long, raw_mask, raw_len])
    seeds = {
        "plain": head() + ops() + plan() + b"hello\r\nworld\r\n\r\npartial",
        "plain-bytewise": head() + ops() + plan(1) + b"one\r\ntwo\r\r\nthree\r\n\n\r\n",
        "limit-exact-and-over": head(limit=8) + ops() + plan(3) + b"12345678\r\n123456789\r\n",
        "limit-carry-on": head(limit=3, on_long=1) + ops() + plan(2) + b"abcd\r\nab\r\nabcdefgh",
        "limit-answer-close": head(limit=2, on_long=2) + ops() + plan(4) + b"ok\r\ntoolong\r\nnever\r\n",
        "raw-switch": head() + ops((1, 5)) + plan(2) + b"a\r\n12345b\r\nxyzzyc\r\n",
        "raw-forever": head() + ops((0, 0), (1, 255)) + plan(5) + b"a\r\nb\r\nraw bytes\r\nstill raw",
        "raw-between-reads": head(raw_mask=0x02, raw_len=3) + ops() + plan(4, 0) + b"halfabc\r\nline\r\n",
        "delimiter-change": head() + ops((2, 1), (2, 0)) + plan(0) + b"a\r\nb\nc\r\nd\n",
        "clear-buffer": head() + ops((0, 0), (4, 0)) + plan(3) + b"a\r\nstop\r\nb\r\nc",
        "inject": head() + ops((5, 0), (5, 1)) + plan() + b"inject\r\nafter\r\n",
        "lose": head() + ops((0, 0), (3, 0)) + plan() + b"a\r\nb\r\nc\r\n",
        "send": head() + ops((7, 0)) + plan(1) + b"echo\r\n",
        "limit-change": head() + ops((6, 1), (6, 9)) + plan(2) + b"a\r\nbb\r\nccc\r\n",
        "split-delimiter-aab": head(delim=b"aab") + ops() + plan(1) + b"xaaabyaabaabzaaaab",
        "split-delimiter-abab": head(delim=b"abab") + ops() + plan(3) + b"ababababxabababab",
        "nul-delimiter": head(delim=b"\0") + ops() + plan(2) + b"a\0\0b\0",
        "no-limit": head(limit="max") + ops() + plan(7) + b"x" * 200 + b"\r\nend",
        # Op (0, 3): pause delivery; the driver resumes before the next read and at the end.
        "pause": head() + ops((0, 3), (0, 0)) + plan(9) + b"a\r\nb\r\nc\r\nd\r\npartial",
        "pause-raw-and-limit": head(limit=5) + ops((0, 3), (1, 4), (0, 3)) + plan(0) + b"a\r\nb\r\n1234c\r\ntoo long\r\n",
    }
    for name, data in seeds.items():
        write("lines", name, data)


def lineonly():
    def head(delim=b"\r\n", limit=16384, on_long=0):
        return bytes([DELIM[delim] | MAX[limit] << 3, on_long])
    seeds = {
        "plain": head() + ops() + plan() + b"hello\r\nworld\r\n\r\npartial",
        "bytewise": head() + ops() + plan(1) + b"one\r\ntwo\r\r\nthree\r\n",
        "limit-exact-and-over": head(limit=8) + ops() + plan(3) + b"12345678\r\n123456789\r\n",
        "limit-carry-on": head(limit=3, on_long=1) + ops() + plan(2) + b"abcd\r\nab\r\nabcdefgh",
        "limit-answer-close": head(limit=2, on_long=2) + ops() + plan(4) + b"ok\r\ntoolong\r\n",
        "lose": head() + ops((0, 0), (1, 0)) + plan() + b"a\r\nb\r\nc\r\n",
        "send": head(delim=b"\n") + ops((2, 0)) + plan(2) + b"echo\nthis\n",
        "limit-change": head() + ops((3, 1), (3, 9)) + plan(2) + b"a\r\nbb\r\nccc\r\n",
        "split-delimiter": head(delim=b"xyzxy") + ops() + plan(1) + b"axyzxyzxyb",
        "no-limit": head(limit="max") + ops() + plan(7) + b"y" * 200,
    }
    for name, data in seeds.items():
        write("lineonly", name, data)


def netstring():
    def ns(payload):
        return str(len(payload)).encode() + b":" + payload + b","
    def head(limit=99999):
        return bytes([MAX[limit]])
    seeds = {
        "plain": head() + ops() + plan() + ns(b"hello world!") + ns(b"") + ns(b"x"),
        "bytewise": head() + ops() + plan(1) + ns(b"hello") + ns(b"12:,"),
        "split": head() + ops() + plan(3, 5) + ns(b"a" * 20) + ns(b"bc"),
        "leading-zero": head() + ops() + plan() + b"01:a,",
        "no-length": head() + ops() + plan() + b":a,",
        "bad-digit": head() + ops() + plan() + b"1x:a,",
        "missing-comma": head() + ops() + plan(2) + b"3:abc;",
        "over-limit": head(8) + ops() + plan() + ns(b"12345678") + ns(b"123456789"),
        "no-limit-many-digits": head("max") + ops() + plan(4) + b"9" * 25 + b":",
        "inject": head() + ops((3, 0), (3, 1)) + plan() + ns(b"again") + ns(b"3:abc,"),
        "lose": head() + ops((0, 0), (1, 0)) + plan() + ns(b"a") + ns(b"b") + ns(b"c"),
        "send": head() + ops((2, 0)) + plan(1) + ns(b"echo"),
        "limit-change": head() + ops((4, 1)) + plan() + ns(b"a") + ns(b"bb"),
    }
    for name, data in seeds.items():
        write("netstring", name, data)


def intn():
    widths = {1: 0, 2: 1, 4: 2, 3: 3}
    def head(width, limit=99999, on_long=0):
        return bytes([widths[width] | MAX[limit] << 2, on_long])
    def fr(width, payload):
        return len(payload).to_bytes(width, "big") + payload
    seeds = {}
    for w in (1, 2, 3, 4):
        seeds[f"int{8 * w}-plain"] = head(w) + ops() + plan() + fr(w, b"hello") + fr(w, b"") + fr(w, b"world")
        seeds[f"int{8 * w}-bytewise"] = head(w) + ops() + plan(1) + fr(w, b"abc") + fr(w, b"defg")
        seeds[f"int{8 * w}-over-limit"] = head(w, 16) + ops() + plan(3) + fr(w, b"x" * 16) + fr(w, b"y" * 17) + fr(w, b"z")
    seeds.update({
        "carry-on": head(2, 3, 1) + ops() + plan(0) + fr(2, b"abcd") + fr(2, b"ab"),
        "answer-close": head(2, 3, 2) + ops() + plan(0) + fr(2, b"abcd"),
        "inject": head(4) + ops((3, 0), (3, 1)) + plan() + fr(4, b"again") + fr(4, b"x"),
        "lose": head(1) + ops((0, 0), (1, 0)) + plan() + fr(1, b"a") + fr(1, b"b") + fr(1, b"c"),
        "send": head(1) + ops((2, 0)) + plan(2) + fr(1, b"echo"),
        "send-over-limit": head(1, 3) + ops((4, 1), (2, 0)) + plan() + fr(1, b"a") + fr(1, b"bb"),
        "huge-prefix": head(4, "max") + ops() + plan(2) + b"\xff\xff\xff\xff" + b"partial",
        # Op (0, 3): pause delivery; the driver resumes before the next read and at the end.
        "pause": head(2) + ops((0, 3), (0, 0)) + plan(7) + fr(2, b"a") + fr(2, b"bb") + fr(2, b"c") + fr(2, b"dddd"),
        "pause-over-limit": head(1, 3) + ops((0, 3)) + plan(0) + fr(1, b"a") + fr(1, b"b") + fr(1, b"toolong"),
    })
    for name, data in seeds.items():
        write("intn", name, data)


def address():
    def head(which, port):
        return bytes([which]) + struct.pack("<i", port)
    seeds = {
        "v4": head(0, 8000) + b"127.0.0.1",
        "v4-bad": head(0, 1) + b"1.2.3",
        "v4-leading-zero": head(0, 1) + b"01.2.3.4",
        "v6": head(0, 0) + b"::1",
        "v6-brackets": head(0, 65535) + b"[::1]",
        "v6-zone": head(0, 80) + b"fe80::1%lo",
        "v6-long-zone-garbage": head(0, 80) + b"0000:0000:0000:0000:0000:0000:0000:0001XXXX%lo",
        "v4-mapped": head(0, 80) + b"::ffff:127.0.0.1",
        "nul-inside": head(0, 80) + b"127.0.0.1\0junk",
        "port-negative": head(0, -1) + b"127.0.0.1",
        "port-too-big": head(0, 65536) + b"127.0.0.1",
        "port-huge": head(0x80, 0x7fffffff) + b"::",
        "hostname": head(0, 80) + b"localhost",
        "listen-empty": head(1, 0) + b"",
        "listen-localhost": head(1, 0) + b"localhost",
        "listen-v6-any": head(1, 0) + b"::",
        "listen-brackets": head(1, 0) + b"[::1]",
        "listen-bracket-only": head(1, 0) + b"[",
        "unix-path": head(2, 0) + b"/tmp/swisted.sock",
        "unix-abstract": head(2, 0) + b"\0swisted",
        "unix-nul-inside": head(2, 0) + b"/tmp/a\0b",
        "unix-too-long": head(2, 0) + b"/" + b"p" * 108,
        "unix-empty": head(2, 0) + b"",
        "printable": head(3, 12345) + b"10.0.0.1",
        "printable-utf8": head(3, -5) + "h\u00f6st\u2603".encode(),
    }
    for name, data in seeds.items():
        write("address", name, data)


if __name__ == "__main__":
    lines()
    lineonly()
    netstring()
    intn()
    address()
