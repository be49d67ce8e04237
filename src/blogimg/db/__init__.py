"""The catalogue: tables, migrations, the queue and every query."""
