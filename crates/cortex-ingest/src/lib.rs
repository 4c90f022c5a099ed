//! cortex-ingest
