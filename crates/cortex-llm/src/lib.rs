//! cortex-llm
