"""Storage backends: the only code that knows SQL.

`sqlite` is the embedded default; `postgres` serves several hosts sharing one
database. Both run the statements of `_sql` and the migrations of their own
module, and pass the same conformance suite.
"""
