"""The Flight SQL wire messages this service speaks, declared here as protobuf descriptors.

Flight SQL puts protobuf messages (packed in `google.protobuf.Any`) into a Flight descriptor's
`cmd`, a ticket, or an action body. The message names, field numbers and types below are the
public wire contract of Apache Arrow's Flight SQL protocol (package `arrow.flight.protocol.sql`);
we declare only the subset the service uses, build the descriptors at import time with the
protobuf runtime, and keep them in a private descriptor pool so they never clash with another
library that registers the full protocol. No code generator, no generated file to keep in step
with the protobuf runtime's version checks.

Example:
    >>> cmd = pack(MESSAGES.CommandStatementQuery(query="SELECT 1"))
    >>> kind, msg = unpack(cmd)
    >>> kind, msg.query
    ('CommandStatementQuery', 'SELECT 1')
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from ..errors import LineageGuardError

PACKAGE = "arrow.flight.protocol.sql"
TYPE_URL_PREFIX = "type.googleapis.com/"

_T = descriptor_pb2.FieldDescriptorProto
_TYPES = {"string": _T.TYPE_STRING, "bytes": _T.TYPE_BYTES, "bool": _T.TYPE_BOOL,
          "uint32": _T.TYPE_UINT32, "int64": _T.TYPE_INT64, "int32": _T.TYPE_INT32}

# message -> fields (name, number, type, cardinality): "one" (proto3 implicit), "optional", "repeated".
_SCHEMA: dict[str, list[tuple[str, int, str, str]]] = {
    "CommandGetSqlInfo": [("info", 1, "uint32", "repeated")],
    "CommandGetCatalogs": [],
    "CommandGetDbSchemas": [("catalog", 1, "string", "optional"),
                            ("db_schema_filter_pattern", 2, "string", "optional")],
    "CommandGetTables": [("catalog", 1, "string", "optional"),
                         ("db_schema_filter_pattern", 2, "string", "optional"),
                         ("table_name_filter_pattern", 3, "string", "optional"),
                         ("table_types", 4, "string", "repeated"),
                         ("include_schema", 5, "bool", "one")],
    "CommandGetTableTypes": [],
    "CommandGetPrimaryKeys": [("catalog", 1, "string", "optional"), ("db_schema", 2, "string", "optional"),
                              ("table", 3, "string", "one")],
    "CommandGetXdbcTypeInfo": [("data_type", 1, "int32", "optional")],
    "CommandStatementQuery": [("query", 1, "string", "one"), ("transaction_id", 2, "bytes", "optional")],
    "TicketStatementQuery": [("statement_handle", 1, "bytes", "one")],
    "CommandPreparedStatementQuery": [("prepared_statement_handle", 1, "bytes", "one")],
    "CommandStatementUpdate": [("query", 1, "string", "one"), ("transaction_id", 2, "bytes", "optional")],
    "CommandPreparedStatementUpdate": [("prepared_statement_handle", 1, "bytes", "one")],
    "DoPutUpdateResult": [("record_count", 1, "int64", "one")],
    "DoPutPreparedStatementResult": [("prepared_statement_handle", 1, "bytes", "optional")],
    "ActionCreatePreparedStatementRequest": [("query", 1, "string", "one"),
                                             ("transaction_id", 2, "bytes", "optional")],
    "ActionCreatePreparedStatementResult": [("prepared_statement_handle", 1, "bytes", "one"),
                                            ("dataset_schema", 2, "bytes", "one"),
                                            ("parameter_schema", 3, "bytes", "one")],
    "ActionClosePreparedStatementRequest": [("prepared_statement_handle", 1, "bytes", "one")],
}

# SqlInfo ids (CommandGetSqlInfo.info) this server answers.
FLIGHT_SQL_SERVER_NAME = 0
FLIGHT_SQL_SERVER_VERSION = 1
FLIGHT_SQL_SERVER_ARROW_VERSION = 2
FLIGHT_SQL_SERVER_READ_ONLY = 3
FLIGHT_SQL_SERVER_SQL = 4
FLIGHT_SQL_SERVER_SUBSTRAIT = 5
FLIGHT_SQL_SERVER_TRANSACTION = 8
FLIGHT_SQL_SERVER_CANCEL = 9
FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT = 100
SQL_DDL_CATALOG = 500
SQL_DDL_SCHEMA = 501
SQL_DDL_TABLE = 502
SQL_IDENTIFIER_QUOTE_CHAR = 504
SQL_ALL_TABLES_ARE_SELECTABLE = 506

ACTION_CREATE_PREPARED_STATEMENT = "CreatePreparedStatement"
ACTION_CLOSE_PREPARED_STATEMENT = "ClosePreparedStatement"


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="lineage_guard/flight_sql_subset.proto",
                                               package=PACKAGE, syntax="proto3")
    for name, fields in _SCHEMA.items():
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, cardinality in fields:
            field = msg.field.add(name=field_name, number=number, type=_TYPES[kind], json_name=field_name)
            field.label = _T.LABEL_REPEATED if cardinality == "repeated" else _T.LABEL_OPTIONAL
            if cardinality == "optional":  # proto3 `optional`: presence through a synthetic oneof
                field.proto3_optional = True
                field.oneof_index = len(msg.oneof_decl)
                msg.oneof_decl.add(name=f"_{field_name}")
    return proto


def _build() -> SimpleNamespace:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    return SimpleNamespace(**{
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}")) for name in _SCHEMA
    })


MESSAGES = _build()


class ProtocolError(LineageGuardError):
    """A Flight SQL request could not be decoded; the message says what was expected."""


def pack(message: Any) -> bytes:
    """`message` wrapped in `google.protobuf.Any`, serialized (what goes into a cmd, ticket or action body)."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()


def unpack(data: bytes) -> tuple[str, Any]:
    """(message name, message) from Any-wrapped bytes; a clear error for anything else."""
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError; the bytes are the client's
        raise ProtocolError("the request is not a Flight SQL command (google.protobuf.Any expected)") from None
    full = wrapper.type_url.rpartition("/")[2]
    package, _, name = full.rpartition(".")
    cls = getattr(MESSAGES, name, None)
    if package != PACKAGE or cls is None:
        raise ProtocolError(f"unsupported Flight SQL command {full or '(empty)'}; this server speaks: "
                            + ", ".join(sorted(_SCHEMA)))
    message = cls()
    try:
        message.ParseFromString(wrapper.value)
    except Exception:  # noqa: BLE001
        raise ProtocolError(f"malformed {name}") from None
    return name, message
