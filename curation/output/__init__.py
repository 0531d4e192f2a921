"""Writing the output: the tables' schema, Parquet parts, WebDataset shards, the run summary,
atomic file writes."""
