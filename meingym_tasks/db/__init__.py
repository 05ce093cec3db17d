"""The project database: the peewee proxy, column types, schema migrations."""
