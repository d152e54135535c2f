"""Alembic environment: runs on a connection handed over by gatewayz.storage.migrate."""

from __future__ import annotations

from alembic import context

from gatewayz.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `gatewayz migrate` (it provides the database connection)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
