"""Storage: the SQLAlchemy engine (SQLite embedded, PostgreSQL in production), schema and migrations."""
