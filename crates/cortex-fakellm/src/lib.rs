//! cortex-fakellm
