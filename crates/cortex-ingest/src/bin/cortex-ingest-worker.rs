//! Stand-alone isolation worker: reads one conversion request on stdin and answers on stdout
//! (see `cortex_ingest::worker_main`). Applications normally host the worker in their own
//! binary instead; this one serves tests and hosts without a subcommand.

fn main() {
    std::process::exit(cortex_ingest::worker_main());
}
