"""Produce what confluent-kafka's Python API refuses to: header names that are not UTF-8.

The Kafka protocol carries a header name as bytes; Java clients always write UTF-8,
but any librdkafka (C, Go, Rust, ...) client can write arbitrary bytes. The Python
``Producer`` only takes ``str`` names, so this goes one level down, to the librdkafka
bundled with confluent-kafka (the one ``supervisor.devbrokers.embedded`` already loads), and
calls ``rd_kafka_producev`` with a header list built by ``rd_kafka_header_add``.
"""

from __future__ import annotations

import ctypes

from supervisor.devbrokers.embedded import _find_librdkafka

# rd_kafka_vtype_t (rdkafka.h)
_VTYPE_END, _VTYPE_TOPIC, _VTYPE_VALUE, _VTYPE_KEY, _VTYPE_HEADERS = 0, 1, 4, 5, 10
_PRODUCER = 0


def produce_with_raw_header(bootstrap: str, topic: str, key: bytes, value: bytes,
                            header_name: bytes, header_value: bytes) -> None:
    """One message whose single header has ``header_name`` as raw bytes; waits for it."""
    lib = ctypes.CDLL(_find_librdkafka())
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_headers_new.restype = ctypes.c_void_p
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    errstr = ctypes.create_string_buffer(512)
    conf = ctypes.c_void_p(lib.rd_kafka_conf_new())
    if lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), errstr, 512):
        raise RuntimeError(errstr.value.decode())
    handle = lib.rd_kafka_new(_PRODUCER, conf, errstr, 512)
    if not handle:
        raise RuntimeError(errstr.value.decode())
    producer = ctypes.c_void_p(handle)
    try:
        headers = ctypes.c_void_p(lib.rd_kafka_headers_new(ctypes.c_size_t(1)))
        lib.rd_kafka_header_add(headers, ctypes.c_char_p(header_name),
                                ctypes.c_ssize_t(len(header_name)),
                                ctypes.c_char_p(header_value),
                                ctypes.c_ssize_t(len(header_value)))
        err = lib.rd_kafka_producev(
            producer, ctypes.c_int(_VTYPE_TOPIC), ctypes.c_char_p(topic.encode()),
            ctypes.c_int(_VTYPE_KEY), ctypes.c_char_p(key), ctypes.c_size_t(len(key)),
            ctypes.c_int(_VTYPE_VALUE), ctypes.c_char_p(value), ctypes.c_size_t(len(value)),
            ctypes.c_int(_VTYPE_HEADERS), headers, ctypes.c_int(_VTYPE_END))
        if err:
            lib.rd_kafka_headers_destroy(headers)  # ownership passes only on success
            raise RuntimeError(f"rd_kafka_producev: {lib.rd_kafka_err2str(err).decode()}")
        left = lib.rd_kafka_flush(producer, 30_000)
        if left:
            raise RuntimeError(f"rd_kafka_flush: {lib.rd_kafka_err2str(left).decode()}")
    finally:
        lib.rd_kafka_destroy(producer)
