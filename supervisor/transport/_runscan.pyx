# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled :func:`supervisor.transport.runscan.scan_run_py` (same contract, same bytes).

The record header is written byte by byte in little-endian order (``wire.RECORD_HEADER``,
``<BHiqqiiH``, 33 bytes) straight into the new bytes object, then key and value are
copied after it: no struct call and no concatenation per message. A record with
headers is rare on the data path and goes through ``wire.encode_record``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from supervisor.transport.runscan import HEADERS_OF
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


def scan_run(list messages, Py_ssize_t start, str topic, int partition, int topic_index,
             list offsets, list keys, list records):
    cdef Py_ssize_t i = start, end = len(messages)
    cdef object msg, headers, key, value, stamp
    cdef int64_t offset, ts
    headers_of = HEADERS_OF
    while i < end:
        msg = messages[i]
        if msg.error() is not None or msg.partition() != partition or msg.topic() != topic:
            return i
        try:
            headers = headers_of(msg)
        except SystemError:
            return -i - 1  # headers unreadable: runscan.py says why it is not re-read
        offset = msg.offset()
        key = msg.key()
        value = msg.value()
        stamp = msg.timestamp()
        ts = stamp[1] if stamp[0] else -1
        offsets.append(offset)
        keys.append(key)
        if headers or (key is not None and type(key) is not bytes) \
                or (value is not None and type(value) is not bytes):
            records.append(encode_record(topic_index, partition, offset, ts, key, value,
                                         headers))
        else:
            records.append(_encode(topic_index, partition, offset, ts, key, value))
        i += 1
    return i
