#!/usr/bin/env python3
"""Readiness probe for the local stack (used by scripts/stack).

Speaks just enough of the Kafka and CQL wire protocols to tell whether a
server really serves clients, with the standard library only, so polling
costs no extra JVM and no package install.

    stack-probe.py kafka HOST PORT       prints e.g. "brokers=1 controller=1"
    stack-probe.py cassandra HOST PORT   prints the release_version, e.g. "5.0.8"

The secure stack (scripts/stack up --secure) is probed over TLS, trusting
--ca, with a login: SASL SCRAM-SHA-512 for Kafka, a password for Cassandra.
--execute CQL runs statements after the probe (how the stack makes users).

    stack-probe.py kafka HOST PORT --ca CA.pem --user U --password-file F
    stack-probe.py cassandra HOST PORT --ca CA.pem --user U --password-file F \
        [--execute STATEMENT]...

Exit 0 when the server answered well, 1 otherwise (reason on stderr).
"""

import argparse
import base64
import hashlib
import hmac
import os
import socket
import ssl
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
API_SASL_HANDSHAKE = 17
API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
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


def kafka_bytes(b):
    return struct.pack(">i", len(b)) + b


def scram_sha512(sock, user, password, ranges):
    """SASL SCRAM-SHA-512 (RFC 5802) over SaslHandshake v1 + SaslAuthenticate."""
    lo, hi = ranges.get(API_SASL_AUTHENTICATE, (0, -1))
    version = 1 if lo <= 1 <= hi else 0
    if not lo <= version <= hi:
        raise ProbeError(f"broker does not support SaslAuthenticate v0 or v1 ({lo}..{hi})")
    mechanism = b"SCRAM-SHA-512"
    r = kafka_call(sock, API_SASL_HANDSHAKE, 1, 3, struct.pack(">h", len(mechanism)) + mechanism)
    error = r.take(">h")
    if error != 0:
        raise ProbeError(f"SaslHandshake error code {error} (is SCRAM-SHA-512 enabled?)")

    def authenticate(correlation_id, payload):
        r = kafka_call(sock, API_SASL_AUTHENTICATE, version, correlation_id, kafka_bytes(payload))
        error = r.take(">h")
        message = r.short_string()
        if error != 0:
            raise ProbeError(f"authentication as {user} failed: {message or error}")
        return r.raw(r.take(">i"))

    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={nonce}"
    server_first = authenticate(4, f"n,,{first_bare}".encode()).decode()
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    if not fields.get("r", "").startswith(nonce):
        raise ProbeError("SCRAM server nonce does not extend ours")
    salted = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", "sha512").digest()
    stored_key = hashlib.sha512(client_key).digest()
    final_bare = f"c={base64.b64encode(b'n,,').decode()},r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.new(stored_key, auth_message, "sha512").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    authenticate(5, f"{final_bare},p={base64.b64encode(proof).decode()}".encode())


def probe_kafka(sock, login=None):
    # ApiVersions first: every broker answers it (before any login), and it
    # tells us whether the Metadata version we speak is supported.
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
    if login:
        scram_sha512(sock, *login, ranges)

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
OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x0F, 0x10
FLAG_TRACING, FLAG_WARNING = 0x02, 0x08
RESULT_ROWS = 0x0002
CONSISTENCY_ONE = 0x0001


def cql_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def cql_call(sock, stream, opcode, body, expect_auth=False):
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
    if got_opcode == OP_AUTHENTICATE and not expect_auth:
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


def cql_query(sock, stream, statement):
    query = statement.encode()
    body = struct.pack(">i", len(query)) + query + struct.pack(">HB", CONSISTENCY_ONE, 0)
    return cql_call(sock, stream, OP_QUERY, body)


def probe_cassandra(sock, login=None, statements=()):
    startup = struct.pack(">H", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0")
    opcode, _ = cql_call(sock, 1, OP_STARTUP, startup, expect_auth=login is not None)
    if opcode == OP_AUTHENTICATE:
        user, password = login
        token = b"\0" + user.encode() + b"\0" + password.encode()
        try:
            opcode, _ = cql_call(sock, 2, OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token)
        except ProbeError as e:
            raise ProbeError(f"login as {user} refused: {e}") from None
        if opcode != OP_AUTH_SUCCESS:
            raise ProbeError(f"AUTH_RESPONSE answered with opcode 0x{opcode:02x}")
    elif opcode != OP_READY:
        raise ProbeError(f"STARTUP answered with opcode 0x{opcode:02x}, expected READY")
    for i, statement in enumerate(statements):
        cql_query(sock, 10 + i, statement)

    opcode, r = cql_query(sock, 3, "SELECT release_version FROM system.local")
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


def parse(argv):
    parser = argparse.ArgumentParser(prog=os.path.basename(argv[0]))
    parser.add_argument("server", choices=sorted(PROBES))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--ca", help="speak TLS, trusting this CA (PEM)")
    parser.add_argument("--user")
    parser.add_argument("--password-file")
    parser.add_argument("--execute", action="append", default=[], metavar="CQL")
    args = parser.parse_args(argv[1:])
    if (args.user is None) != (args.password_file is None):
        parser.error("--user and --password-file go together")
    if args.execute and args.server != "cassandra":
        parser.error("--execute is for cassandra")
    return args


def main(argv):
    args = parse(argv)
    server, host, port = args.server, args.host, args.port
    try:
        login = None
        if args.user:
            with open(args.password_file) as f:
                login = (args.user, f.read().rstrip("\n"))
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as raw:
            raw.settimeout(TIMEOUT_S)
            sock = raw
            if args.ca:
                context = ssl.create_default_context(cafile=args.ca)
                sock = context.wrap_socket(raw, server_hostname=host)
            kwargs = {"login": login}
            if server == "cassandra":
                kwargs["statements"] = args.execute
            print(PROBES[server](sock, **kwargs))
        return 0
    except (OSError, ProbeError) as e:
        print(f"{server} on {host}:{port}: {e}", file=sys.stderr)
        return 1
    except (struct.error, UnicodeDecodeError, KeyError, ValueError) as e:
        print(f"{server} on {host}:{port}: malformed response ({e!r})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
