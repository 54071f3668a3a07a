# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled :func:`supervisor.transport.runscan.scan_run_py` and
:func:`~supervisor.transport.runscan.copy_records_py` (same contracts, same bytes).

The record header is written byte by byte in little-endian order (``wire.RECORD_HEADER``,
``<BHiqqiiH``, 33 bytes) straight into the new bytes object, then key and value are
copied after it: no struct call and no concatenation per message. A record with
headers is rare on the data path and goes through ``wire.encode_record``.

A confluent-kafka ``Message`` is read from its C struct when the installed
confluent-kafka's layout was verified at import (:func:`direct_reads`): eight method
calls, a timestamp tuple and their reference counting per message cost more than the
encode itself. Anything unusual (an error, headers, a missing topic, a key or value
that is not bytes, another type of object) goes through the methods as before.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject, PyTypeObject
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


cdef extern from *:
    """
    /* confluent-kafka's Message (src/confluent_kafka/src/confluent_kafka.h, 2.x), up
       to the fields read here; checked on the first message of the type. */
    typedef struct {
        PyObject_HEAD
        PyObject *topic;
        PyObject *value;
        PyObject *key;
        PyObject *headers;
        void *c_headers;
        PyObject *error;
        int32_t partition;
        int64_t offset;
        int32_t leader_epoch;
        int64_t timestamp;
        int tstype;
    } agentd_ck_message;
    """
    ctypedef struct ck_message "agentd_ck_message":
        PyObject* topic
        PyObject* value
        PyObject* key
        PyObject* headers
        void* c_headers
        PyObject* error
        int partition
        int64_t offset
        int64_t timestamp
        int tstype


cdef object _MESSAGE = None     # the type whose layout checked out (confluent-kafka's)
cdef object _REFUSED = None     # a type whose layout did not: its methods, always
cdef bint _DIRECT = True        # direct_reads(False) turns the struct reads off


cdef inline ck_message* _struct(object msg) noexcept:
    return <ck_message*><PyObject*>msg


cdef enum:
    _MISMATCH = 0
    _MATCH = 1
    _UNDECIDED = 2


cdef int _layout_verdict(object msg) except -1:
    """Whether ``msg`` holds its fields where :c:type:`ck_message` says, checked
    against its own methods: the same objects for topic, key and value, the same
    numbers for partition, offset and timestamp, no error where the methods say none.
    A message with an error or headers (by the struct) decides nothing: ``headers()``
    is never called here, as a header name that is not UTF-8 leaves a list that must
    not be read twice (runscan.py). A confluent-kafka that moved a field fails this on
    its first message and is read through its methods from then on."""
    cdef object kind = type(msg)
    if kind.__name__ != "Message" or \
            (<PyTypeObject*>kind).tp_basicsize < <Py_ssize_t>sizeof(ck_message):
        return _MISMATCH
    cdef ck_message seen = _struct(msg)[0]
    if seen.headers != NULL or seen.c_headers != NULL:
        return _UNDECIDED
    cdef object error = msg.error(), topic = msg.topic(), key = msg.key()
    cdef object value = msg.value(), stamp = msg.timestamp(), offset = msg.offset()
    cdef object partition = msg.partition()
    if error is not None or topic is None:
        return _UNDECIDED
    if (seen.topic == <PyObject*>topic
            and seen.key == (<PyObject*>key if key is not None else NULL)
            and seen.value == (<PyObject*>value if value is not None else NULL)
            and seen.partition == partition and seen.offset == offset
            and seen.tstype == stamp[0] and seen.timestamp == stamp[1]
            and (seen.error == NULL or seen.error == <PyObject*>None)):
        return _MATCH
    return _MISMATCH


#: confluent-kafka releases whose Message struct is the one above (2.1 added
#: leader_epoch; later releases appended fields after latency): a release outside this
#: range is read through its methods until its layout is looked at and added here.
KNOWN_LAYOUT = ((2, 1), (2, 16))


def known_layout(version: str) -> bool:
    """Whether confluent-kafka ``version`` (e.g. ``"2.16.2"``) is in
    :data:`KNOWN_LAYOUT`."""
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return KNOWN_LAYOUT[0] <= release <= KNOWN_LAYOUT[1]


cdef bint _check_type(object msg) except -1:
    """Learn from ``msg`` whether its type's struct can be read (once per type): the
    release must be one whose layout is known, and the struct must read as the
    methods do on this message."""
    global _MESSAGE, _REFUSED
    if type(msg) is _REFUSED:
        return False
    if not known_layout(_confluent_version()):
        _REFUSED = type(msg)
        return False
    verdict = _layout_verdict(msg)
    if verdict == _MATCH:
        _MESSAGE = type(msg)
    elif verdict == _MISMATCH:
        _REFUSED = type(msg)
    return verdict == _MATCH        # undecided: the next run's first message decides


def _confluent_version() -> str:
    # version() is a (str, int) tuple in some 2.x releases and a str in others.
    try:
        import confluent_kafka
        return str(confluent_kafka.__version__)
    except Exception:  # not confluent-kafka's: no version, no direct reads
        return ""


def layout_matches(msg):
    """Whether ``msg``'s struct reads as its methods do (the check :func:`scan_run`
    makes once per message type): True or False, None for a message with an error or
    headers, which cannot tell."""
    verdict = _layout_verdict(msg)
    return None if verdict == _UNDECIDED else verdict == _MATCH


def direct_reads(enabled=None) -> bool:
    """Whether :func:`scan_run` may read confluent-kafka Messages from their struct
    (where the layout checked out on the first message of their type); with
    ``enabled``, turn that on or off first (the tests run both ways). Returns the
    setting now."""
    global _DIRECT
    if enabled is not None:
        _DIRECT = bool(enabled)
    return _DIRECT


def direct_type():
    """The message type whose struct :func:`scan_run` reads, None before one checked
    out (or when none did)."""
    return _MESSAGE


def scan_run(list messages, Py_ssize_t start, str topic, int partition, int topic_index,
             list offsets, list keys, list records):
    cdef Py_ssize_t i = start, end = len(messages)
    cdef object msg, headers, key, value, stamp, offset_obj
    cdef int64_t offset, ts, previous = 0
    cdef ck_message* m
    cdef bint direct = _DIRECT
    if direct and i < end and _MESSAGE is None and type(messages[i]) is not _REFUSED:
        _check_type(messages[i])
    cdef object message_type = _MESSAGE
    while i < end:
        msg = messages[i]
        if direct and type(msg) is message_type:
            m = _struct(msg)
            # Only the ordinary message is read here; the methods below decide the
            # rest (an error, headers, another partition or topic), as without this.
            if m.headers == NULL and m.c_headers == NULL and m.partition == partition \
                    and (m.error == NULL or m.error == <PyObject*>None) \
                    and m.topic != NULL \
                    and (m.topic == <PyObject*>topic or <object>m.topic == topic):
                offset = m.offset
                if i > start and offset <= previous:
                    return i
                previous = offset
                key = <object>m.key if m.key != NULL else None
                value = <object>m.value if m.value != NULL else None
                ts = m.timestamp if m.tstype else -1
                offsets.append(offset)
                if keys is not None:
                    keys.append(key)
                if (key is not None and type(key) is not bytes) \
                        or (value is not None and type(value) is not bytes):
                    records.append(encode_record(topic_index, partition, offset, ts,
                                                 key, value, None))
                else:
                    records.append(_encode(topic_index, partition, offset, ts, key,
                                           value))
                i += 1
                continue
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
