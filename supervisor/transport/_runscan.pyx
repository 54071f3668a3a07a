# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled :func:`supervisor.transport.runscan.scan_run_py` and
:func:`~supervisor.transport.runscan.copy_records_py` (same contracts, same bytes).

The record header is written byte by byte in little-endian order (``wire.RECORD_HEADER``,
``<BHiqqiiH``, 33 bytes) straight into the new bytes object, then key and value are
copied after it: no struct call and no concatenation per message. A record with
headers is rare on the data path and goes through ``wire.encode_record``.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from supervisor.transport.wire import RECORD, encode_record

cdef Py_ssize_t _HEAD = 33
cdef int _RECORD = RECORD


cdef inline void _le(char* p, uint64_t v, int n) noexcept:
    cdef int k
    for k in range(n):
        p[k] = <char>(v & 0xFF)
        v >>= 8


cdef bytes _encode(int tidx, int partition, int64_t offset, int64_t ts, object key,
                   object value):
    cdef Py_ssize_t klen = -1, vlen = -1, size = _HEAD
    if key is not None:
        klen = PyBytes_GET_SIZE(key)
        size += klen
    if value is not None:
        vlen = PyBytes_GET_SIZE(value)
        size += vlen
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    p[0] = <char>_RECORD
    _le(p + 1, <uint64_t>tidx, 2)
    _le(p + 3, <uint64_t><int64_t>partition, 4)
    _le(p + 7, <uint64_t>offset, 8)
    _le(p + 15, <uint64_t>ts, 8)
    _le(p + 23, <uint64_t><int64_t>klen, 4)
    _le(p + 27, <uint64_t><int64_t>vlen, 4)
    p[31] = 0
    p[32] = 0
    cdef Py_ssize_t pos = _HEAD
    if klen > 0:
        memcpy(p + pos, PyBytes_AS_STRING(key), klen)
        pos += klen
    if vlen > 0:
        memcpy(p + pos, PyBytes_AS_STRING(value), vlen)
    return out


cdef extern from "Python.h":
    # Called through the vectorcall machinery, which turns "a result with an error
    # set" (confluent-kafka's headers() for a header name that is not UTF-8) into a
    # SystemError at once; Cython's own fast call of a C method would not check it.
    object PyObject_CallMethodNoArgs(object obj, object name)


cdef str _HEADERS = "headers"


def scan_run(list messages, Py_ssize_t start, str topic, int partition, int topic_index,
             list offsets, list keys, list records):
    cdef Py_ssize_t i = start, end = len(messages)
    cdef object msg, headers, key, value, stamp, offset_obj
    cdef int64_t offset, ts, previous = 0
    while i < end:
        msg = messages[i]
        if msg.error() is not None or msg.partition() != partition \
                or msg.topic() != topic:
            return i
        try:
            headers = PyObject_CallMethodNoArgs(msg, _HEADERS)
        except SystemError:
            return -i - 1  # headers unreadable: runscan.py says why it is not re-read
        offset_obj = msg.offset()
        offset = offset_obj
        if i > start and offset <= previous:
            return i                         # a run's offsets strictly increase
        previous = offset
        key = msg.key()
        value = msg.value()
        stamp = msg.timestamp()
        ts = stamp[1] if stamp[0] else -1
        offsets.append(offset_obj)
        if keys is not None:
            keys.append(key)
        if headers is not None or (key is not None and type(key) is not bytes) \
                or (value is not None and type(value) is not bytes):
            records.append(encode_record(topic_index, partition, offset, ts, key, value,
                                         headers))
        else:
            records.append(_encode(topic_index, partition, offset, ts, key, value))
        i += 1
    return i


def record_sizes(list records):
    """Compiled :func:`supervisor.transport.runscan.record_sizes_py`."""
    cdef Py_ssize_t total = 0, longest = 0, n
    cdef object record
    for record in records:
        n = len(record)
        total += n
        if n > longest:
            longest = n
    return total, longest


def copy_records(object data, object words, Py_ssize_t mask, uint64_t head, uint64_t stop,
                 list records, Py_ssize_t start, Py_ssize_t end):
    """Compiled :func:`supervisor.transport.runscan.copy_records_py` (same contract).

    One buffer acquisition of the ring's data area per call, then per record a length
    word and a ``memcpy``: no Python call per record. ``words`` is unused (the pure
    loop stores lengths through it); the length is stored as a native u64, as the
    pure loop's ``cast("Q")`` view does. The caller publishes head after this returns
    (ring.py's ordering argument: every store here precedes that one)."""
    cdef Py_buffer view
    cdef Py_buffer rec_view
    cdef Py_ssize_t i = start, length, nbytes = 0
    cdef uint64_t stop_at, offset
    cdef char* base
    cdef const char* src
    cdef object record
    if end > len(records):
        end = len(records)
    PyObject_GetBuffer(data, &view, PyBUF_WRITABLE)
    try:
        base = <char*>view.buf
        while i < end:
            record = records[i]
            if record is None:               # retired while it waited: skip it
                i += 1
                continue
            if type(record) is bytes:
                length = PyBytes_GET_SIZE(record)
                stop_at = head + <uint64_t>((length + 15) & ~7)
                if stop_at > stop:
                    break
                offset = (head & <uint64_t>mask) + 8
                (<uint64_t*>(base + offset - 8))[0] = <uint64_t>length
                memcpy(base + offset, PyBytes_AS_STRING(record), length)
            else:                            # bytearray, memoryview: any 1-byte buffer
                PyObject_GetBuffer(record, &rec_view, PyBUF_SIMPLE)
                try:
                    length = rec_view.len
                    stop_at = head + <uint64_t>((length + 15) & ~7)
                    if stop_at > stop:
                        break
                    offset = (head & <uint64_t>mask) + 8
                    (<uint64_t*>(base + offset - 8))[0] = <uint64_t>length
                    memcpy(base + offset, rec_view.buf, length)
                finally:
                    PyBuffer_Release(&rec_view)
            head = stop_at
            nbytes += length
            i += 1
    finally:
        PyBuffer_Release(&view)
    return i, head, nbytes
