"""A PostgreSQL table: upsert on customer_id (created if missing), delete on removal.

The connection string comes from the environment variable the export names (`dsn_env`, default
`ACRM_POSTGRES_DSN`, or `ACRM_POSTGRES_DSN_<NAME>`), never from YAML. Rows are copied into a temporary
table and merged with one `INSERT … ON CONFLICT (customer_id) DO UPDATE`, in one transaction: a reader
sees all or nothing.

The DSN is parsed before connecting: libpq's parse errors quote pieces of the string, so a DSN that does
not parse is reported without them. Every other error goes through `redact` with the DSN and its password,
and is raised without its psycopg cause (Dagster would log the cause's text too).
"""

from __future__ import annotations

import os
import re

import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from acrm_pipelines.exports.destinations.base import Delivery, DeliveryFailed, Job
from acrm_pipelines.exports.spec import DSN_ENV_PATTERN, DSN_ENV_RULE, redact


def pg_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return "text"


class PostgresTable:
    can_remove = True

    def deliver(self, job: Job) -> Delivery:
        dest = job.export.destination
        if not re.fullmatch(DSN_ENV_PATTERN, dest.dsn_env):  # again here, for a definition that skipped validation
            raise DeliveryFailed(f"export {job.key}: destination.dsn_env: {DSN_ENV_RULE}")
        dsn = os.environ.get(dest.dsn_env)
        if not dsn:
            raise DeliveryFailed(
                f"export {job.key}: environment variable {dest.dsn_env} (the PostgreSQL DSN) is not set"
            )
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:
            raise DeliveryFailed(
                f"export {job.key}: environment variable {dest.dsn_env} is not a PostgreSQL connection string "
                "(key=value pairs or a postgresql:// URL); its value is not shown"
            ) from None
        secrets = [dsn, *(str(params[k]) for k in ("password", "sslpassword") if params.get(k))]
        schema, _, name = dest.table.rpartition(".")
        target = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        columns = [(f.name, pg_type(f.type)) for f in job.adds.schema if f.name != "customer_id"]
        try:
            with psycopg.connect(dsn, connect_timeout=10) as conn, conn.cursor() as cur:
                if schema:
                    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                cur.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (customer_id text PRIMARY KEY, acrm_export text, "
                        "acrm_as_of date, acrm_updated_at timestamptz)"
                    ).format(target)
                )
                cur.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = coalesce(%s, current_schema()) AND table_name = %s",
                    [schema or None, name],
                )
                existing = dict(cur.fetchall())
                for column, kind in columns:
                    have = existing.get(column)
                    if have is not None and not have.startswith(kind.split()[0]):
                        raise DeliveryFailed(
                            f"export {job.key}: column {column} of {dest.table} is {have}, the export sends {kind}; "
                            "alter or drop the column"
                        )
                    cur.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + kind).format(
                            target, sql.Identifier(column)
                        )
                    )
                names = ["customer_id", *[c for c, _ in columns]]
                cur.execute(
                    sql.SQL("CREATE TEMP TABLE acrm_rows ({}) ON COMMIT DROP").format(
                        sql.SQL(", ").join(
                            sql.SQL("{} " + k).format(sql.Identifier(c)) for c, k in [("customer_id", "text"), *columns]
                        )
                    )
                )
                with cur.copy(
                    sql.SQL("COPY acrm_rows ({}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, names)))
                ) as copy:
                    for row in job.adds.select(names).to_pylist():
                        copy.write_row([row[c] for c in names])
                updates = sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                    for c in [*[c for c, _ in columns], "acrm_export", "acrm_as_of", "acrm_updated_at"]
                )
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} ({}, acrm_export, acrm_as_of, acrm_updated_at) "
                        "SELECT {}, %s, %s, now() FROM acrm_rows ON CONFLICT (customer_id) DO UPDATE SET {}"
                    ).format(
                        target,
                        sql.SQL(", ").join(map(sql.Identifier, names)),
                        sql.SQL(", ").join(map(sql.Identifier, names)),
                        updates,
                    ),
                    [job.key, job.as_of],
                )
                removed = job.removes["customer_id"].to_pylist()
                if job.export.mode == "full":  # the table mirrors the audience: this export's leavers go
                    cur.execute(
                        sql.SQL(
                            "DELETE FROM {} WHERE acrm_export = %s AND NOT customer_id = ANY(%s) RETURNING customer_id"
                        ).format(target),
                        [job.key, job.adds["customer_id"].to_pylist()],
                    )
                    removed = [r[0] for r in cur.fetchall()]
                elif removed:
                    cur.execute(sql.SQL("DELETE FROM {} WHERE customer_id = ANY(%s)").format(target), [removed])
        except psycopg.Error as err:
            first = (str(err).splitlines() or [""])[0]
            raise DeliveryFailed(
                f"export {job.key}: PostgreSQL table {dest.table}: {type(err).__name__}: {redact(first, secrets)}"
            ) from None
        return Delivery(
            location=f"postgresql:{dest.table}",
            sent=job.adds["customer_id"],
            removed=removed,
            batches=1,
            attempts=1,
        )
