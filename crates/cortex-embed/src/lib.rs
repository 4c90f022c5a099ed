//! cortex-embed
