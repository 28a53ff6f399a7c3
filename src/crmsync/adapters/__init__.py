"""Infrastructure: the SQL store (tables, migrations, repositories)."""
