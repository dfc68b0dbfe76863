#!/usr/bin/env python3
"""Generates the malformed GGUF corpus in tests/gguf/malformed/ and a few small valid
files in tests/gguf/seeds/ (fuzzer seeds; the tests check they parse).

Each file is a small hand-built GGUF with exactly one defect; EXPECTED.txt maps every file
to a substring its gguf::Error message must contain, so the test proves the reader fails
for the intended reason, not at some earlier check. Run from anywhere:
    python3 tests/gguf/make_malformed.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "malformed")
SEEDS = os.path.join(HERE, "seeds")

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
T_F32, T_Q8_0 = 0, 8


def u32(x):
    return struct.pack("<I", x)


def i32(x):
    return struct.pack("<i", x)


def u64(x):
    return struct.pack("<Q", x)


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b)) + b


def kv(key, vtype, payload):
    return gstr(key) + u32(vtype) + payload


def tinfo(name, ne, ttype, off, n_dims=None):
    n = len(ne) if n_dims is None else n_dims
    return gstr(name) + u32(n) + b"".join(u64(d) for d in ne) + u32(ttype) + u64(off)


def gguf(kvs=(), tinfos=(), data=b"", align=32, version=3, magic=b"GGUF", n_kv=None,
         n_tensors=None):
    """Header + metadata + tensor infos, padded to `align`, then `data`."""
    head = magic + u32(version)
    head += u64(len(tinfos) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(tinfos)
    if tinfos:
        head += b"\0" * (-len(head) % align)
    return head + data


ARCH = kv("general.architecture", STR, gstr("test"))
DATA32 = bytes(range(32))  # one F32 tensor of 8 elements


def one_tensor(ne=(8,), ttype=T_F32, off=0, data=DATA32, kvs=(ARCH,), **kw):
    return gguf(list(kvs), [tinfo("t", list(ne), ttype, off, **kw)], data)


CASES = {
    # name: (bytes, expected message substring)
    "empty": (b"", "truncated: magic"),
    "truncated_header": (b"GGUF\x03\x00", "truncated: version"),
    "truncated_counts": (b"GGUF" + u32(3) + u64(0), "truncated: metadata count"),
    "bad_magic": (b"GGML" + u32(3) + u64(0) + u64(0), "bad magic"),
    "version1": (gguf(version=1), "version 1 is not supported"),
    "version99": (gguf(version=99), "unsupported GGUF version 99"),
    "big_endian": (gguf(version=0x03000000), "big-endian"),
    "huge_n_kv": (gguf(n_kv=1 << 60), "metadata count 1152921504606846976 exceeds the cap"),
    "n_kv_cannot_fit": (gguf([ARCH], n_kv=1000), "cannot fit"),
    "huge_n_tensors": (gguf(n_tensors=1 << 62), "tensor count 4611686018427387904 exceeds"),
    "n_tensors_cannot_fit": (gguf([ARCH], n_tensors=100000), "cannot fit"),
    "huge_key_length": (gguf(n_kv=1) + u64(1 << 63) + b"abc" * 8, "key length"),
    "key_past_eof": (gguf(n_kv=1) + u64(100) + b"abc" * 8, "truncated: key"),
    "huge_string_length": (gguf([kv("k", STR, u64(1 << 40) + b"x" * 16)]),
                           "string value length 1099511627776 exceeds"),
    "string_past_eof": (gguf([kv("k", STR, u64(20) + b"x" * 16)]), "truncated: string value"),
    "huge_array_count": (gguf([kv("k", ARR, u32(U8) + u64(1 << 40) + b"\0" * 16)]),
                         "array count 1099511627776 exceeds"),
    "array_past_eof": (gguf([kv("k", ARR, u32(U32) + u64(1 << 20) + b"\0" * 16)]),
                       "extends past end of file"),
    "string_array_cannot_fit": (gguf([kv("k", ARR, u32(STR) + u64(1 << 20) + b"\0" * 16)]),
                                "strings cannot fit"),
    "nested_array": (gguf([kv("k", ARR, u32(ARR) + u64(1) + u32(U8) + u64(1) + b"\1")]),
                     "nested arrays"),
    "unknown_array_elem_type": (gguf([kv("k", ARR, u32(13) + u64(1) + b"\0" * 8)]),
                                "unknown array element type 13"),
    "unknown_value_type": (gguf([kv("k", 13, b"\0" * 8)]), "unknown value type 13"),
    "unknown_value_type_huge": (gguf([kv("k", 0xFFFFFFFF, b"\0" * 8)]),
                                "unknown value type 4294967295"),
    "bool_value_2": (gguf([kv("flag", BOOL, b"\2")]), "bool value 2"),
    "bool_array_value_2": (gguf([kv("flags", ARR, u32(BOOL) + u64(3) + b"\1\0\2")]),
                           "bool array element 2"),
    "empty_key": (gguf([kv("", U8, b"\1")]), "empty key"),
    "duplicate_key": (gguf([ARCH, kv("general.architecture", STR, gstr("other"))]),
                      "duplicate key 'general.architecture'"),
    "alignment_0": (one_tensor(kvs=[ARCH, kv("general.alignment", U32, u32(0))]),
                    "general.alignment 0 is not a power of two"),
    "alignment_3": (one_tensor(kvs=[ARCH, kv("general.alignment", U32, u32(3))]),
                    "general.alignment 3 is not a power of two"),
    "alignment_2pow30": (one_tensor(kvs=[ARCH, kv("general.alignment", U32, u32(1 << 30))]),
                         "general.alignment 1073741824 is not a power of two"),
    "alignment_string": (gguf([kv("general.alignment", STR, gstr("32"))]),
                         "general.alignment must be an unsigned integer"),
    "alignment_negative": (gguf([kv("general.alignment", I32, i32(-32))]),
                           "general.alignment must be an unsigned integer"),
    "n_dims_0": (one_tensor(ne=(), n_dims=0), "dimension count 0"),
    "n_dims_5": (one_tensor(ne=(8, 1, 1, 1, 1)), "dimension count 5"),
    "ne_zero": (one_tensor(ne=(8, 0)), "dimension 1 has invalid size 0"),
    "ne_too_big": (one_tensor(ne=(1 << 63,)), "dimension 0 has invalid size"),
    "ne_overflow": (one_tensor(ne=(1 << 32, 1 << 32)), "element count overflows int64"),
    "byte_size_overflow": (one_tensor(ne=(1 << 31, 1 << 31)), "byte size overflows"),
    "tensor_type_removed": (one_tensor(ttype=4), "unknown tensor type 4"),
    "tensor_type_unknown": (one_tensor(ttype=99), "unknown tensor type 99"),
    "row_not_block_multiple": (one_tensor(ne=(33,), ttype=T_Q8_0, data=b"\0" * 64),
                               "row length 33 is not a multiple of the q8_0 block size 32"),
    "misaligned_offset": (one_tensor(off=16, data=b"\0" * 64), "offset 16 is not a multiple"),
    "data_past_eof": (one_tensor(ne=(16,)), "data [0, 0+64) extends past end of file"),
    "offset_past_eof": (one_tensor(off=1 << 20), "extends past end of file"),
    "offset_wraps": (one_tensor(off=(1 << 64) - 32), "extends past end of file"),
    "data_section_past_eof": (gguf([ARCH], [tinfo("t", [8], T_F32, 0)])[:-8],
                              "starts past end of file"),
    "tensor_info_truncated": (gguf([ARCH], [tinfo("t", [8], T_F32, 0)])[:90],
                              "truncated: tensor"),
    "overlapping_tensors": (gguf([ARCH], [tinfo("a", [16], T_F32, 0),
                                          tinfo("b", [8], T_F32, 32)], b"\0" * 64),
                            "overlaps tensor 'a'"),
    "same_offset_tensors": (gguf([ARCH], [tinfo("a", [8], T_F32, 0),
                                          tinfo("b", [8], T_F32, 0)], b"\0" * 64),
                            "overlaps tensor"),
    "duplicate_tensor_name": (gguf([ARCH], [tinfo("w", [8], T_F32, 0),
                                            tinfo("w", [8], T_F32, 32)], b"\0" * 64),
                              "duplicate tensor name 'w'"),
    "empty_tensor_name": (gguf([ARCH], [tinfo("", [8], T_F32, 0)], DATA32), "empty name"),
    "newline_in_key": (gguf([kv("a\nb", U8, b"\1"), kv("a\nb", U8, b"\1")]),
                       "duplicate key 'a\\x0ab'"),
}


SEED_CASES = {
    "tensors": gguf([ARCH,
                     kv("a.u8", U8, b"\7"), kv("a.i8", I8, b"\xff"), kv("a.u16", U16, b"\1\2"),
                     kv("a.i16", I16, b"\xfe\xff"), kv("a.u32", U32, u32(7)),
                     kv("a.i32", I32, i32(-7)), kv("a.f32", F32, struct.pack("<f", 0.5)),
                     kv("a.bool", BOOL, b"\1"), kv("a.u64", U64, u64(9)),
                     kv("a.i64", I64, struct.pack("<q", -9)),
                     kv("a.f64", F64, struct.pack("<d", 0.25)),
                     kv("a.strs", ARR, u32(STR) + u64(2) + gstr("ab") + gstr("")),
                     kv("a.i32s", ARR, u32(I32) + u64(2) + i32(1) + i32(-1))],
                    [tinfo("f", [8, 2], T_F32, 0), tinfo("q", [32], T_Q8_0, 64)],
                    bytes(range(64)) + b"\x11" * 34 + b"\0" * 30),
    "metadata_only": gguf([ARCH, kv("tokenizer.ggml.tokens", ARR,
                                    u32(STR) + u64(3) + gstr("a") + gstr("b") + gstr("c"))]),
    "v2_align64": gguf([kv("general.alignment", U32, u32(64))],
                       [tinfo("t", [16], T_F32, 0)], bytes(range(64)), align=64, version=2),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    lines = []
    for name, (data, expected) in sorted(CASES.items()):
        with open(os.path.join(OUT, name + ".gguf"), "wb") as fh:
            fh.write(data)
        lines.append(f"{name}.gguf\t{expected}\n")
    with open(os.path.join(OUT, "EXPECTED.txt"), "w") as fh:
        fh.write("# file<TAB>substring of the gguf::Error message (make_malformed.py)\n")
        fh.writelines(lines)
    os.makedirs(SEEDS, exist_ok=True)
    for f in os.listdir(SEEDS):
        os.remove(os.path.join(SEEDS, f))
    for name, data in sorted(SEED_CASES.items()):
        with open(os.path.join(SEEDS, name + ".gguf"), "wb") as fh:
            fh.write(data)


if __name__ == "__main__":
    main()
