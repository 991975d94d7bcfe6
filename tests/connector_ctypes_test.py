#!/usr/bin/env python3
"""The connector's C ABI driven from Python with ctypes, as an inference
server would load it: host-memory mode, a store and a load with a head offset,
get_finished, lookup, counters, and the error of a bad configuration.

usage: connector_ctypes_test.py LIBKVFS_CONNECTOR_SO
"""
import ctypes as C
import os
import random
import sys
import tempfile
import time


class Tensor(C.Structure):
    _fields_ = [("base", C.c_uint64), ("page_bytes", C.c_uint64),
                ("block_stride", C.c_uint64), ("num_blocks", C.c_uint64),
                ("group", C.c_uint32)]


class Config(C.Structure):
    _fields_ = [("abi_version", C.c_uint32), ("memory", C.c_uint32),
                ("copy_path", C.c_uint32), ("device", C.c_int32),
                ("threads", C.c_uint32), ("blocks_per_file", C.c_uint32),
                ("chunk_bytes", C.c_uint64), ("max_queued_stores", C.c_uint64)]


class Request(C.Structure):
    _fields_ = [("path", C.c_char_p), ("block_ids", C.POINTER(C.c_int64)),
                ("num_blocks", C.c_uint32), ("head_offset", C.c_uint32),
                ("group", C.c_uint32)]


class Result(C.Structure):
    _fields_ = [("job", C.c_uint64), ("success", C.c_int32),
                ("bytes", C.c_uint64), ("seconds", C.c_double)]


class Counters(C.Structure):
    _fields_ = [(name, C.c_uint64) for name in (
        "stores_written", "stores_skipped", "stores_dropped", "stores_cancelled",
        "store_failures", "loads_done", "load_failures", "bytes_written", "bytes_read")]


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def main():
    lib = C.CDLL(sys.argv[1])
    lib.kvc_create.restype = C.c_void_p
    lib.kvc_create.argtypes = [C.POINTER(Config), C.POINTER(Tensor), C.c_size_t,
                               C.c_char_p, C.c_size_t]
    lib.kvc_destroy.argtypes = [C.c_void_p]
    lib.kvc_store_async.argtypes = [C.c_void_p, C.c_uint64, C.POINTER(Request), C.c_size_t,
                                    C.c_uint64, C.c_char_p, C.c_size_t]
    lib.kvc_load_async.argtypes = [C.c_void_p, C.c_uint64, C.POINTER(Request), C.c_size_t,
                                   C.c_char_p, C.c_size_t]
    lib.kvc_get_finished.restype = C.c_size_t
    lib.kvc_get_finished.argtypes = [C.c_void_p, C.POINTER(Result), C.c_size_t]
    lib.kvc_wait.argtypes = [C.c_void_p, C.POINTER(C.c_uint64), C.c_size_t]
    lib.kvc_lookup.restype = C.c_size_t
    lib.kvc_lookup.argtypes = [C.c_void_p, C.POINTER(C.c_char_p), C.c_size_t]
    lib.kvc_get_counters.argtypes = [C.c_void_p, C.POINTER(Counters)]

    layers, page, blocks, per_file = 4, 16 << 10, 32, 8
    rng = random.Random(42)
    memory = [C.create_string_buffer(bytes(rng.getrandbits(8) for _ in range(page * blocks)),
                                     page * blocks)
              for _ in range(2 * layers)]  # K and V per layer, contiguous blocks
    tensors = (Tensor * len(memory))(*[
        Tensor(C.addressof(m), page, page, blocks, 0) for m in memory])
    err = C.create_string_buffer(512)

    bad = Config(abi_version=99)
    check(lib.kvc_create(C.byref(bad), tensors, len(memory), err, 512) is None,
          "a wrong ABI version was accepted")
    check(b"ABI version" in err.value, "no message for a wrong ABI version: %r" % err.value)

    config = Config(abi_version=1, memory=0, threads=4, blocks_per_file=per_file)
    engine = lib.kvc_create(C.byref(config), tensors, len(memory), err, 512)
    check(engine is not None, "kvc_create failed: %r" % err.value)

    root = tempfile.mkdtemp(prefix="kvc-ctypes-")
    path = os.path.join(root, "m_abc_r0", "1a2", "3b_g0", "f.bin").encode()
    ids = (C.c_int64 * per_file)(*[5, 9, 2, 30, 31, 0, 7, 12])
    store = Request(path, ids, per_file, 2, 0)  # the file holds ids[2:]
    check(lib.kvc_store_async(engine, 7, C.byref(store), 1, 0, err, 512) == 0,
          "store refused: %r" % err.value)

    def finish(job):
        out = (Result * 4)()
        deadline = time.time() + 60
        while time.time() < deadline:
            for i in range(lib.kvc_get_finished(engine, out, 4)):
                if out[i].job == job:
                    return out[i]
            time.sleep(0.001)
        check(False, "job %d never finished" % job)

    r = finish(7)
    check(r.success == 1 and r.bytes == 6 * 2 * layers * page, "store result %d %d"
          % (r.success, r.bytes))
    # The file's bytes, built here independently: block-major, then tensor.
    expected = b"".join(memory[t].raw[b * page:(b + 1) * page]
                        for b in list(ids)[2:] for t in range(len(memory)))
    with open(path, "rb") as f:
        check(f.read() == expected, "file bytes differ from the documented layout")

    # Load the last 3 blocks into other block ids after clearing the tensors.
    originals = [m.raw for m in memory]
    for m in memory:
        C.memset(m, 0, page * blocks)
    targets = (C.c_int64 * 4)(*[1, 3, 4, 6])
    load = Request(path, targets, 4, 1, 0)
    check(lib.kvc_load_async(engine, 8, C.byref(load), 1, err, 512) == 0, "load refused")
    r = finish(8)
    check(r.success == 1 and r.bytes == 3 * 2 * layers * page, "load result")
    for t, m in enumerate(memory):
        for dst, src in zip([3, 4, 6], list(ids)[-3:]):
            check(m.raw[dst * page:(dst + 1) * page] ==
                  originals[t][src * page:(src + 1) * page], "loaded page differs")
        check(m.raw[page:2 * page] == bytes(page), "a block outside the load was written")

    missing = Request(os.path.join(root, "nope.bin").encode(), targets, 4, 0, 0)
    check(lib.kvc_load_async(engine, 9, C.byref(missing), 1, err, 512) == 0, "load refused")
    check(finish(9).success == 0, "a load of a missing file succeeded")

    paths = (C.c_char_p * 3)(path, os.path.join(root, "nope.bin").encode(), path)
    check(lib.kvc_lookup(engine, paths, 3) == 1, "lookup")
    counters = Counters()
    lib.kvc_get_counters(engine, C.byref(counters))
    check(counters.stores_written == 1 and counters.loads_done == 1 and
          counters.load_failures == 1, "counters")
    lib.kvc_destroy(engine)
    print("connector ctypes test: ok")


if __name__ == "__main__":
    main()
