"""The `huaico` command: one module per group of commands, each a thin call
into the package that does the work.

`main` holds the click group and registers the others; `common` holds what
every command shares (the data-directory option, errors as one line).
"""
