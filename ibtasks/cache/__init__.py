"""A shared cache of built artifacts in an OCI registry (ORAS conventions): keys, the
registry client, the entry format. Knows nothing of doit; tasks/cached_step.py wraps actions."""
