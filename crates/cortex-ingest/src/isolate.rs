//! Conversion in a child process under a wall-clock timeout and memory/CPU rlimits.
//!
//! Protocol (`cortex-ingest-worker/1`): the parent writes one JSON header line
//! (`{"protocol", "format", "limits", "len"}`) followed by `len` raw document bytes to the
//! worker's stdin; the worker answers with one JSON value on stdout, `{"Ok": Document}` or
//! `{"Err": IngestError}`, and exits 0. Anything a parser prints is diverted to stderr.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::convert::contain_panics;
use crate::{Document, Format, IngestError, Limits, convert};

/// Version tag of the parent ↔ worker frame format.
pub const WORKER_PROTOCOL: &str = "cortex-ingest-worker/1";

/// Fault injection for tests of the isolation path, read by [`worker_main`]:
/// `sleep:<ms>` (hang), `alloc:<MiB>` (allocate and touch memory), `panic` (a parser panic,
/// contained in-band), `abort` (die by SIGABRT). Unset in production.
pub const FAULT_ENV: &str = "CORTEX_INGEST_WORKER_FAULT";

/// Largest stderr tail kept from a worker for error messages.
const STDERR_CAP: u64 = 64 * 1024;

/// How to start the worker: a program that ends up calling [`worker_main`].
///
/// The application binary hosts the worker itself, e.g.
/// `WorkerCommand::current_exe(["__ingest-worker"])` with a hidden subcommand whose handler is
/// `std::process::exit(cortex_ingest::worker_main())`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// Executable to spawn.
    pub program: PathBuf,
    /// Arguments passed to it.
    pub args: Vec<OsString>,
    /// Extra environment variables (the parent's environment is inherited).
    pub env: Vec<(OsString, OsString)>,
}

impl WorkerCommand {
    /// A worker command running `program` without arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The running executable with `args` (for binaries that host the worker themselves).
    pub fn current_exe<I, A>(args: I) -> std::io::Result<Self>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        Ok(Self {
            program: std::env::current_exe()?,
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
        })
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

#[derive(Serialize, Deserialize)]
struct RequestHeader {
    protocol: String,
    format: Format,
    limits: Limits,
    len: u64,
}

#[derive(Serialize, Deserialize)]
enum Response {
    Ok(Document),
    Err(IngestError),
}

/// Converts `bytes` in a child process started from `worker`.
///
/// The child runs in its own process group under `RLIMIT_AS = limits.max_memory_bytes`,
/// `RLIMIT_CPU = limits.max_cpu_seconds` and no core dumps; when `limits.timeout` expires the
/// whole group is killed and [`IngestError::Timeout`] returned. A child that dies (memory or
/// CPU limit, abort, signal) gives [`IngestError::Crashed`]; parser panics come back in-band as
/// [`IngestError::Panicked`]. Dropping the returned future kills the child too.
pub async fn convert_isolated(
    worker: &WorkerCommand,
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Document, IngestError> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(IngestError::too_large(
            "input bytes",
            limits.max_input_bytes,
        ));
    }
    let header = RequestHeader {
        protocol: WORKER_PROTOCOL.to_string(),
        format,
        limits: limits.clone(),
        len: bytes.len() as u64,
    };
    let mut header = serde_json::to_vec(&header).map_err(|e| IngestError::Worker {
        reason: format!("cannot encode request: {e}"),
    })?;
    header.push(b'\n');

    let mut command = tokio::process::Command::new(&worker.program);
    command
        .args(&worker.args)
        .envs(worker.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let (memory, cpu) = (limits.max_memory_bytes, limits.max_cpu_seconds);
    // SAFETY: the hook runs in the forked child before exec and only calls getrlimit(2) and
    // setrlimit(2), which are async-signal-safe and allocate nothing.
    unsafe {
        command.pre_exec(move || apply_rlimits(memory, cpu));
    }
    let mut child = command.spawn().map_err(|e| IngestError::Worker {
        reason: format!("cannot start {}: {e}", worker.program.display()),
    })?;
    let mut group = GroupKill(child.id().and_then(|id| i32::try_from(id).ok()));
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(IngestError::Worker {
            reason: "worker pipes unavailable".into(),
        });
    };
    let output_cap = limits
        .max_output_bytes
        .saturating_mul(2)
        .saturating_add(1024 * 1024);

    let write = async move {
        // A worker that refuses early closes its stdin; the answer tells why.
        if stdin.write_all(&header).await.is_ok() {
            let _ = stdin.write_all(bytes).await;
        }
        let _ = stdin.shutdown().await;
    };
    let run = async {
        let (_, out, err, status) = tokio::join!(
            write,
            read_capped(&mut stdout, output_cap),
            read_capped(&mut stderr, STDERR_CAP),
            child.wait()
        );
        (out, err, status)
    };
    let outcome = tokio::time::timeout(limits.timeout, run).await;
    match outcome {
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            group.disarm();
            Err(IngestError::Timeout {
                after_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            })
        }
        Ok((out, err, status)) => {
            let status = status.map_err(|e| IngestError::Worker {
                reason: format!("cannot wait for the worker: {e}"),
            })?;
            if !status.success() {
                // Stragglers of a dead worker (e.g. a pdftotext child) go with it.
                group.kill();
            }
            group.disarm();
            interpret(status, out, &err.0, output_cap)
        }
    }
}

fn interpret(
    status: ExitStatus,
    (out, overflowed): (Vec<u8>, bool),
    stderr: &[u8],
    output_cap: u64,
) -> Result<Document, IngestError> {
    let tail = String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.chars().take(300).collect::<String>())
        .unwrap_or_default();
    let with_tail = |reason: String| {
        if tail.is_empty() {
            reason
        } else {
            format!("{reason}; stderr: {tail}")
        }
    };
    if !status.success() {
        let reason = match status.signal() {
            Some(libc::SIGKILL) => "killed by SIGKILL (CPU or memory limit)".to_string(),
            Some(libc::SIGXCPU) => "CPU time limit exceeded (SIGXCPU)".to_string(),
            Some(libc::SIGABRT) => {
                "aborted (SIGABRT: allocation beyond the memory limit, or a parser abort)"
                    .to_string()
            }
            Some(libc::SIGSEGV) => "segmentation fault (SIGSEGV)".to_string(),
            Some(signal) => format!("killed by signal {signal}"),
            None => format!("exited with status {}", status.code().unwrap_or(-1)),
        };
        return Err(IngestError::Crashed {
            reason: with_tail(reason),
        });
    }
    if overflowed {
        return Err(IngestError::too_large("worker answer bytes", output_cap));
    }
    match serde_json::from_slice::<Response>(&out) {
        Ok(Response::Ok(document)) => Ok(document),
        Ok(Response::Err(error)) => Err(error),
        Err(e) => Err(IngestError::Worker {
            reason: with_tail(format!("unreadable worker answer: {e}")),
        }),
    }
}

/// Reads up to `cap` bytes, then drains (and drops) the rest so the writer never blocks.
async fn read_capped(reader: &mut (impl AsyncRead + Unpin), cap: u64) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let _ = (&mut *reader).take(cap).read_to_end(&mut out).await;
    let mut rest = [0u8; 8192];
    let mut overflowed = false;
    while let Ok(n) = reader.read(&mut rest).await {
        if n == 0 {
            break;
        }
        overflowed = true;
    }
    (out, overflowed)
}

fn apply_rlimits(memory: u64, cpu_seconds: u64) -> std::io::Result<()> {
    use rlimit::Resource;
    let clamp = |resource: Resource, wanted: u64| -> std::io::Result<()> {
        let (_, hard) = rlimit::getrlimit(resource)?;
        let value = wanted.min(hard);
        rlimit::setrlimit(resource, value, value)
    };
    if memory > 0 {
        clamp(Resource::AS, memory)?;
    }
    if cpu_seconds > 0 {
        let (_, hard) = rlimit::getrlimit(Resource::CPU)?;
        // The soft limit sends SIGXCPU, the hard limit a second later SIGKILL.
        rlimit::setrlimit(
            Resource::CPU,
            cpu_seconds.min(hard),
            cpu_seconds.saturating_add(1).min(hard),
        )?;
    }
    rlimit::setrlimit(Resource::CORE, 0, 0)
}

/// Kills the worker's process group when armed (on timeout, and when the future is dropped).
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&self) {
        if let Some(pgid) = self.0.filter(|p| *p > 1) {
            // SAFETY: kill(2) with a negative pid signals the process group we created for the
            // worker (process_group(0) makes its id the group id); no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Converts in the current process on tokio's blocking pool, with panics contained.
///
/// For hosts without a worker binary. `limits.timeout` bounds how long the caller waits
/// ([`IngestError::Timeout`]), but the conversion thread cannot be stopped and runs on; memory
/// and CPU are not bounded. Prefer [`convert_isolated`] for untrusted files. Needs a tokio
/// runtime.
pub async fn convert_in_process(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Document, IngestError> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(IngestError::too_large(
            "input bytes",
            limits.max_input_bytes,
        ));
    }
    let owned = bytes.to_vec();
    let task_limits = limits.clone();
    let task = tokio::task::spawn_blocking(move || convert(&owned, format, &task_limits));
    match tokio::time::timeout(limits.timeout, task).await {
        Err(_) => Err(IngestError::Timeout {
            after_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
        }),
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(IngestError::Panicked {
            message: join.to_string(),
        }),
    }
}

/// Entry point of the isolation worker: reads one request from stdin, converts it, writes the
/// answer to stdout, and returns the process exit code (0 when an answer was written, also for
/// a conversion error; 2 for a malformed request).
///
/// Call it from a hidden subcommand of the application binary (or from the bundled
/// `cortex-ingest-worker` binary): `std::process::exit(cortex_ingest::worker_main())`.
pub fn worker_main() -> i32 {
    let mut answer = AnswerSink::take_stdout();
    let (header, bytes) = match read_request(&mut BufReader::new(std::io::stdin().lock())) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("cortex-ingest worker: {message}");
            return 2;
        }
    };
    let response = match std::env::var(FAULT_ENV).ok().as_deref().map(inject_fault) {
        Some(Some(error)) => Response::Err(error),
        _ => match convert(&bytes, header.format, &header.limits) {
            Ok(document) => Response::Ok(document),
            Err(error) => Response::Err(error),
        },
    };
    let written = serde_json::to_writer(&mut answer, &response)
        .map_err(|e| e.to_string())
        .and_then(|()| answer.flush().map_err(|e| e.to_string()));
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cortex-ingest worker: cannot write the answer: {e}");
            3
        }
    }
}

fn read_request(input: &mut impl BufRead) -> Result<(RequestHeader, Vec<u8>), String> {
    let mut line = Vec::new();
    input
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the request header: {e}"))?;
    let header: RequestHeader =
        serde_json::from_slice(&line).map_err(|e| format!("malformed request header: {e}"))?;
    if header.protocol != WORKER_PROTOCOL {
        return Err(format!(
            "protocol '{}' not supported (expected '{WORKER_PROTOCOL}')",
            header.protocol
        ));
    }
    if header.len > header.limits.max_input_bytes {
        return Err(format!(
            "request of {} bytes exceeds max_input_bytes {}",
            header.len, header.limits.max_input_bytes
        ));
    }
    let mut bytes = Vec::new();
    input
        .take(header.len)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the document: {e}"))?;
    if bytes.len() as u64 != header.len {
        return Err(format!(
            "document truncated: {} of {} bytes",
            bytes.len(),
            header.len
        ));
    }
    Ok((header, bytes))
}

/// Applies a test fault; returns the in-band error it produces, if any.
fn inject_fault(fault: &str) -> Option<IngestError> {
    let (kind, arg) = fault.split_once(':').unwrap_or((fault, ""));
    match kind {
        "sleep" => {
            std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(3_600_000)));
            None
        }
        "alloc" => {
            let mib: usize = arg.parse().unwrap_or(4096);
            let block = vec![1u8; mib.saturating_mul(1024 * 1024)];
            std::hint::black_box(&block);
            None
        }
        "panic" => {
            contain_panics(|| -> Result<(), IngestError> { panic!("injected parser fault") }).err()
        }
        "abort" => std::process::abort(),
        _ => None,
    }
}

/// Where the worker writes its answer: the original stdout, with fd 1 pointed at stderr so
/// that stray prints of a parser cannot corrupt the answer.
enum AnswerSink {
    Diverted(std::fs::File),
    Stdout(std::io::Stdout),
}

impl AnswerSink {
    fn take_stdout() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: dup(2)/dup2(2) on the process's own standard descriptors. The duplicate is a
        // fresh descriptor owned solely by the File built from it; std's Stdout keeps writing
        // to descriptor 1, which then refers to stderr.
        unsafe {
            let saved = libc::dup(1);
            if saved < 0 {
                return Self::Stdout(std::io::stdout());
            }
            if libc::dup2(2, 1) < 0 {
                libc::close(saved);
                return Self::Stdout(std::io::stdout());
            }
            Self::Diverted(std::fs::File::from_raw_fd(saved))
        }
    }
}

impl Write for AnswerSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Diverted(f) => f.write(buf),
            Self::Stdout(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Diverted(f) => f.flush(),
            Self::Stdout(s) => s.flush(),
        }
    }
}
