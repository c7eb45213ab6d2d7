"""The `egan-fill` command line (click only; each command calls one library function)."""
