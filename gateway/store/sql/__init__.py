"""SQL implementation of the resource store (SQLite and PostgreSQL). The only place importing SQLAlchemy."""
