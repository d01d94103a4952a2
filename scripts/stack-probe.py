#!/usr/bin/env python3
"""Readiness probe for the local stack (used by scripts/stack).

Speaks just enough of the Kafka and CQL wire protocols to tell whether a
server really serves clients, with the standard library only, so polling
costs no extra JVM and no package install.

    stack-probe.py kafka HOST PORT       prints e.g. "brokers=1 controller=1"
    stack-probe.py cassandra HOST PORT   prints the release_version, e.g. "5.0.8"

Exit 0 when the server answered well, 1 otherwise (reason on stderr).
"""

import socket
import struct
import sys

TIMEOUT_S = 2.0


class ProbeError(Exception):
    pass


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ProbeError("connection closed by server")
        data += chunk
    return data


class Reader:
    """Big-endian cursor over a response body."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def raw(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ProbeError("truncated response")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def short_string(self):
        """int16 length + UTF-8 (Kafka STRING, CQL [string]); -1 = null."""
        n = self.take(">h")
        return None if n < 0 else self.raw(n).decode()


# --- Kafka ------------------------------------------------------------------
# Request: int32 size, then header v1 (int16 api_key, int16 api_version,
# int32 correlation_id, STRING client_id), then the body. Response: int32
# size, int32 correlation_id, body. ApiVersions v0 and Metadata v4 are both
# "non-flexible" versions, so no tagged fields anywhere.

API_METADATA = 3
API_VERSIONS = 18
METADATA_VERSION = 4  # Kafka 4.x dropped Metadata v0-v3 (KIP-896)


def kafka_call(sock, api_key, api_version, correlation_id, body=b""):
    client_id = b"aqueduct-stack-probe"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id))
    message = header + client_id + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    response = Reader(recv_exact(sock, size))
    echoed = response.take(">i")
    if echoed != correlation_id:
        raise ProbeError(f"correlation id {echoed}, expected {correlation_id}")
    return response


def probe_kafka(sock):
    # ApiVersions first: every broker answers it, and it tells us whether the
    # Metadata version we speak is supported.
    r = kafka_call(sock, API_VERSIONS, 0, 1)
    error = r.take(">h")
    if error != 0:
        raise ProbeError(f"ApiVersions error code {error}")
    ranges = {}
    for _ in range(r.take(">i")):
        key, lo, hi = r.take(">hhh")
        ranges[key] = (lo, hi)
    lo, hi = ranges.get(API_METADATA, (0, -1))
    if not lo <= METADATA_VERSION <= hi:
        raise ProbeError(f"broker does not support Metadata v{METADATA_VERSION}")

    # Metadata with an empty topic list: only the broker list. A broker that
    # lists itself is registered and unfenced, i.e. ready for clients.
    body = struct.pack(">ib", 0, 0)  # topics: [], allow_auto_topic_creation: false
    r = kafka_call(sock, API_METADATA, METADATA_VERSION, 2, body)
    r.take(">i")  # throttle_time_ms
    brokers = r.take(">i")
    for _ in range(brokers):
        r.take(">i")  # node_id
        r.short_string()  # host
        r.take(">i")  # port
        r.short_string()  # rack
    r.short_string()  # cluster_id
    controller = r.take(">i")
    if brokers < 1:
        raise ProbeError("metadata lists no broker yet")
    return f"brokers={brokers} controller={controller}"


# --- Cassandra (CQL native protocol v4) --------------------------------------
# Frame: byte version (0x04 request, 0x84 response), byte flags, int16 stream,
# byte opcode, int32 body length, body.

OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_QUERY, OP_RESULT = 0x07, 0x08
FLAG_TRACING, FLAG_WARNING = 0x02, 0x08
RESULT_ROWS = 0x0002
CONSISTENCY_ONE = 0x0001


def cql_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def cql_call(sock, stream, opcode, body):
    sock.sendall(struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body)
    version, flags, got_stream, got_opcode, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    if version != 0x84:
        raise ProbeError(f"unexpected protocol version byte 0x{version:02x}")
    if got_stream != stream:
        raise ProbeError(f"stream {got_stream}, expected {stream}")
    r = Reader(recv_exact(sock, length))
    if flags & FLAG_TRACING:
        r.raw(16)  # tracing session id
    if flags & FLAG_WARNING:
        for _ in range(r.take(">H")):
            r.short_string()
    if got_opcode == OP_ERROR:
        code = r.take(">i")
        raise ProbeError(f"server error 0x{code:04x}: {r.short_string()}")
    if got_opcode == OP_AUTHENTICATE:
        raise ProbeError("server asks for authentication")
    return got_opcode, r


def skip_cql_type(r):
    """A column type [option]; only what system.local can hold matters here."""
    type_id = r.take(">H")
    if type_id == 0x0000:  # custom: class name
        r.short_string()
    elif type_id in (0x0020, 0x0022):  # list, set
        skip_cql_type(r)
    elif type_id == 0x0021:  # map
        skip_cql_type(r)
        skip_cql_type(r)
    elif type_id >= 0x0030:  # UDT, tuple
        raise ProbeError(f"unsupported column type 0x{type_id:04x}")


def probe_cassandra(sock):
    startup = struct.pack(">H", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0")
    opcode, _ = cql_call(sock, 1, OP_STARTUP, startup)
    if opcode != OP_READY:
        raise ProbeError(f"STARTUP answered with opcode 0x{opcode:02x}, expected READY")

    query = b"SELECT release_version FROM system.local"
    body = struct.pack(">i", len(query)) + query + struct.pack(">HB", CONSISTENCY_ONE, 0)
    opcode, r = cql_call(sock, 2, OP_QUERY, body)
    if opcode != OP_RESULT or r.take(">i") != RESULT_ROWS:
        raise ProbeError("QUERY did not return rows")

    # Rows metadata: flags, column count, [paging state], table spec, columns.
    flags, columns = r.take(">ii")
    if flags & 0x0002:  # has_more_pages
        r.raw(r.take(">i"))
    global_spec = flags & 0x0001
    if global_spec:
        r.short_string()  # keyspace
        r.short_string()  # table
    for _ in range(columns):
        if not global_spec:
            r.short_string()
            r.short_string()
        r.short_string()  # column name
        skip_cql_type(r)
    if r.take(">i") < 1:
        raise ProbeError("system.local has no row")
    n = r.take(">i")  # first cell of the first row: release_version (text)
    if n < 0:
        raise ProbeError("release_version is null")
    return r.raw(n).decode()


PROBES = {"kafka": probe_kafka, "cassandra": probe_cassandra}


def main(argv):
    if len(argv) != 4 or argv[1] not in PROBES:
        print(f"usage: {argv[0]} kafka|cassandra HOST PORT", file=sys.stderr)
        return 2
    server, host, port = argv[1], argv[2], int(argv[3])
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
            sock.settimeout(TIMEOUT_S)
            print(PROBES[server](sock))
        return 0
    except (OSError, ProbeError) as e:
        print(f"{server} on {host}:{port}: {e}", file=sys.stderr)
        return 1
    except (struct.error, UnicodeDecodeError) as e:
        print(f"{server} on {host}:{port}: malformed response ({e})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
