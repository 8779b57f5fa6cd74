"""Every call to PostgreSQL: connections, the state store, running steps, psql and pg_dump,
finding the binaries and the throwaway server. The only place that imports psycopg."""
