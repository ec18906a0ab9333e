"""The one MetaData every table is on, and its naming convention."""

from typing import Any

from sqlalchemy import Index, MetaData, text, util

# A naming convention makes constraint names stable, so Alembic can diff and drop them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def is_one_of(column: str, values: tuple[str, ...]) -> str:
    """The SQL of a CHECK that ``column`` holds one of ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class PartialIndex(Index):
    """An index of the rows that match ``where``, the same SQL on SQLite and PostgreSQL.

    What ``Index(..., sqlite_where=text(where), postgresql_where=text(where))`` declares,
    except that the PostgreSQL condition is attached when PostgreSQL first asks for this
    index's options (its DDL compiler, Alembic's comparison): naming it at construction
    imports the PostgreSQL dialect (about 80 ms) into every command on SQLite (#18).
    """

    def __init__(self, name: str | None, *columns: str, where: str, unique: bool = False) -> None:
        self.where_sql = where
        super().__init__(name, *columns, unique=unique, sqlite_where=text(where))

    @util.memoized_property
    def dialect_options(self) -> util.PopulateDict[str, Any]:
        def options_of(dialect_name: str) -> Any:
            options = self._kw_reg_for_dialect_cls(dialect_name)
            if dialect_name == "postgresql":
                options["where"] = text(self.where_sql)
            return options

        return util.PopulateDict(options_of)
