"""Azure Table Storage through azure-data-tables, authenticated with a token credential."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

Entity = dict[str, Any]
BATCH_LIMIT = 100  # Table Storage transactions hold at most 100 entities of one partition
BATCH_BYTES = 3 << 20  # ... and a request of at most 4 MiB: room kept for the multipart framing
CHUNK_CHARS = 30_000  # a string property holds at most 64 KiB of UTF-16


def key(value: str) -> str:
    """Table keys may not hold / \\ # ? or control characters; UPNs of guests contain '#'."""
    return quote(value, safe="@.-_~!$&'()*+,;=:")


def pack(data: Any) -> dict[str, Any]:
    """JSON split over as many string properties as it needs (an entity holds up to 1 MiB)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
    return {"PayloadParts": len(chunks), **{f"Payload{i}": chunk for i, chunk in enumerate(chunks)}}


def unpack(entity: Mapping[str, Any]) -> Any:
    return json.loads("".join(entity[f"Payload{i}"] for i in range(int(entity["PayloadParts"]))))


class StaleWrite(Exception):
    """Someone else changed the entity since we read it (HTTP 412): re-read and decide again."""


class StateStore(Protocol):
    def get(self, table: str, partition_key: str, row_key: str) -> Entity | None: ...
    def insert(self, table: str, entity: Mapping[str, Any]) -> bool: ...
    def replace(self, table: str, entity: Mapping[str, Any], etag: str | None) -> None: ...
    def insert_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> int: ...
    def upsert_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> int: ...
    def claim_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> list[Entity]: ...
    def merge(self, table: str, entity: Mapping[str, Any]) -> None: ...
    def delete(self, table: str, partition_key: str, row_key: str) -> None: ...
    def delete_many(self, table: str, keys: Iterable[tuple[str, str]]) -> int: ...
    def query(
        self,
        table: str,
        query_filter: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Entity]: ...


class TableStore:
    """State tables named `<prefix><name>`, created on first use."""

    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self._service = service
        self._prefix = prefix
        self._tables: dict[str, TableClient] = {}
        self.transactions = 0

    def _table(self, name: str) -> TableClient:
        if name not in self._tables:
            self.transactions += 1
            self._tables[name] = self._service.create_table_if_not_exists(self._prefix + name)
        return self._tables[name]

    def get(self, table: str, partition_key: str, row_key: str) -> Entity | None:
        from azure.core.exceptions import ResourceNotFoundError

        self.transactions += 1
        try:
            entity = self._table(table).get_entity(partition_key, row_key)
        except ResourceNotFoundError:
            return None
        return _with_etag(entity)

    def insert(self, table: str, entity: Mapping[str, Any]) -> bool:
        """Create the entity; False if it already exists (the caller lost a race, or retried)."""
        return self._create(table, entity)

    def _create(self, table: str, entity: Mapping[str, Any]) -> bool:
        from azure.core.exceptions import ResourceExistsError

        self.transactions += 1
        try:
            self._table(table).create_entity(_without_etag(entity))
        except ResourceExistsError:
            return False
        return True

    def replace(self, table: str, entity: Mapping[str, Any], etag: str | None) -> None:
        """Replace only if unchanged since read (etag); etag None means create-or-replace."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError
        from azure.data.tables import UpdateMode

        self.transactions += 1
        body = _without_etag(entity)
        try:
            if etag is None:
                self._table(table).upsert_entity(body, mode=UpdateMode.REPLACE)
            else:
                self._table(table).update_entity(
                    body, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except ResourceModifiedError as error:
            raise StaleWrite(
                f"{table}/{entity['PartitionKey']}/{entity['RowKey']} changed meanwhile"
            ) from error

    def insert_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> int:
        """Create the entities in transactions (see `transactions`); returns transactions used.

        One that exists already fails its whole transaction (409): that transaction's entities
        are then inserted one by one and the existing ones left as they are, as `insert` does
        (our own write that landed before its answer was lost, or before a crash)."""
        return self._in_transactions(
            table, entities, ("create",), lambda e: self._create(table, e), tolerated="EntityAlreadyExists"
        )

    def claim_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> list[Entity]:
        """Create the entities in transactions, as `insert_many`; return those that existed
        already, as stored: each is someone's earlier claim (ours, if a crash came between), and
        the caller compares it with its own."""
        claimed_before: list[Entity] = []

        def one(entity: Entity) -> None:
            if not self._create(table, entity):
                stored = self.get(table, entity["PartitionKey"], entity["RowKey"])
                claimed_before.append(stored or entity)  # gone meanwhile: nobody else holds it

        self._in_transactions(table, entities, ("create",), one, tolerated="EntityAlreadyExists")
        return claimed_before

    def upsert_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> int:
        """Create or replace the entities in transactions (see `transactions`); returns transactions used."""
        from azure.data.tables import UpdateMode

        return self._in_transactions(
            table, entities, ("upsert", {"mode": UpdateMode.REPLACE}), lambda e: self.replace(table, e, None)
        )

    def delete_many(self, table: str, keys: Iterable[tuple[str, str]]) -> int:
        """Delete (PartitionKey, RowKey)s in transactions; returns transactions used. One already
        gone fails its whole transaction (404): that transaction's are then deleted one by one,
        as `delete` does (absent already is not an error)."""
        entities = ({"PartitionKey": partition, "RowKey": row} for partition, row in keys)
        return self._in_transactions(
            table, entities, ("delete",), lambda e: self.delete(table, e["PartitionKey"], e["RowKey"]),
            tolerated="ResourceNotFound",
        )  # fmt: skip

    def _in_transactions(
        self,
        table: str,
        entities: Iterable[Mapping[str, Any]],
        operation: tuple[Any, ...],
        one: Callable[[Entity], None],
        tolerated: str | None = None,
    ) -> int:
        """`operation` (the SDK's transaction verb and options) on each entity, a transaction per
        `transactions` chunk. `one(entity)` sends a single entity as a plain request: a
        partition's lone entity (a transaction of one costs the SDK three times its CPU), and
        each of a transaction that failed with the `tolerated` error code."""
        from azure.data.tables import TableTransactionError

        used = 0
        for chunk in transactions(entities):
            used += 1
            if len(chunk) == 1:
                one(chunk[0])
                continue
            self.transactions += 1
            try:
                self._table(table).submit_transaction([(operation[0], e, *operation[1:]) for e in chunk])
            except TableTransactionError as error:
                if tolerated is None or error.error_code != tolerated:
                    raise
                for entity in chunk:
                    one(entity)
                used += len(chunk)
        return used

    def merge(self, table: str, entity: Mapping[str, Any]) -> None:
        """Set the given properties, keep the others; create the entity if it is missing."""
        from azure.data.tables import UpdateMode

        self.transactions += 1
        self._table(table).upsert_entity(_without_etag(entity), mode=UpdateMode.MERGE)

    def delete(self, table: str, partition_key: str, row_key: str) -> None:
        self.transactions += 1
        self._table(table).delete_entity(partition_key, row_key)  # absent already: not an error

    def query(
        self,
        table: str,
        query_filter: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Entity]:
        pages = self._table(table).query_entities(
            query_filter, parameters=dict(parameters), select=list(select) if select else None,
            results_per_page=page_size,
        ).by_page()  # fmt: skip
        for page in pages:
            self.transactions += 1  # one request per page
            for entity in page:
                yield _with_etag(entity)


def transactions(entities: Iterable[Mapping[str, Any]]) -> Iterator[list[Entity]]:
    """Entities grouped for entity-group transactions: one partition each, at most BATCH_LIMIT
    entities and about BATCH_BYTES of JSON; partitions in the order they first appear."""
    by_partition: dict[str, list[Entity]] = {}
    for entity in entities:
        by_partition.setdefault(entity["PartitionKey"], []).append(_without_etag(entity))
    for batch in by_partition.values():
        chunk: list[Entity] = []
        size = 0
        for entity in batch:
            weight = len(json.dumps(entity, default=str, ensure_ascii=False).encode())
            if chunk and (len(chunk) == BATCH_LIMIT or size + weight > BATCH_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append(entity)
            size += weight
        if chunk:
            yield chunk


def _with_etag(entity: Any) -> Entity:
    return {**entity, "etag": entity.metadata.get("etag")}


def _without_etag(entity: Mapping[str, Any]) -> Entity:
    return {k: v for k, v in entity.items() if k != "etag"}
