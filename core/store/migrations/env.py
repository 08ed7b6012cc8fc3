"""Alembic environment: the engine comes from ``Store`` (see core/store/engine.py)."""

from alembic import context

from core.store.tables import metadata

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    connection.info["write"] = True
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=engine.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
