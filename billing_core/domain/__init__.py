"""Pure billing rules: no I/O, no database, no clock."""
