#!/bin/sh
# Runs once, when the database is first made: lets the services' user open replication
# connections (the CDC relay mode streams the write-ahead log over one). A pg_hba.conf line for
# "all" databases does not cover them.
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
