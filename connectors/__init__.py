"""Sources and sinks: replay Parquet, the Parquet ledger, the run report."""
