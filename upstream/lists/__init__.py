"""Lists that stay fast on a million rows: counting, indexes, shared query pieces, exports."""
