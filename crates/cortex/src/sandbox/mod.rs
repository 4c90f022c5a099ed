//! The sandbox: one workspace directory per project under `sandbox.workspace_root` (`/workspace`
//! as the agent sees it), and `run_command` isolated by bubblewrap — no daemon, no container
//! engine; the kernel's namespaces per command.
//!
//! A command runs as `bwrap` with every namespace unshared (so no network at all: a new network
//! namespace has only its own loopback), the system directories bound read-only, the workspace
//! bound read-write at `/workspace`, a private size-limited `/tmp`, a fresh `/proc`, a minimal
//! `/dev`, an empty environment, no further user namespaces inside, and `--die-with-parent`: when
//! the command's first process ends, bubblewrap's init ends and the kernel kills every process
//! left in its PID namespace (a background process cannot outlive its command); a timeout, an
//! output flood or a stopped run kills that init directly (its host pid comes from
//! `--info-fd`), with the same effect. The server's
//! data directory, workspace root and configuration file are never bound; if one lies under a
//! bound system directory it is covered with an empty mount. Limits: wall clock (the process
//! group is killed), `RLIMIT_CPU`, `RLIMIT_AS`, `RLIMIT_FSIZE` (set before bubblewrap starts),
//! `RLIMIT_NPROC` (set inside, where it counts only the sandbox's own processes), and output.
//!
//! When the server runs as root, commands run as an unprivileged host user (`sandbox.uid`,
//! 65534): the spawned child first binds the workspace onto a directory that user can reach, in
//! a mount namespace of its own, then gives up root, then starts bubblewrap (which, running
//! unprivileged, must be able to reach every path it binds). Files the server writes into a
//! workspace are given to that user.
//!
//! At start-up [`Sandbox::start`] runs one real command; if bubblewrap does not work here
//! (not installed, no unprivileged user namespaces, a container's seccomp policy) the sandbox is
//! `unavailable`: the log says why and what to do, `/health/detailed` shows it, and
//! `run_command` answers a tool error. Nothing runs unisolated unless
//! `sandbox.allow_unsandboxed = true`.

pub mod fs;
pub mod tools;

use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::{Config, SandboxConfig};
pub use fs::{FileEntry, FsError, Workspace};

/// How commands run on this node.
#[derive(Debug, Clone, PartialEq)]
pub enum Isolation {
    /// Under bubblewrap (the start-up probe passed).
    Bubblewrap,
    /// Without isolation, because the operator set `sandbox.allow_unsandboxed`.
    Unsandboxed,
    /// Not at all; the reason (with what to do) is given to the model and the log.
    Unavailable(String),
}

/// What one command did.
#[derive(Debug, Clone)]
pub struct CommandResult {
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Its standard output and error, interleaved as written, up to `max_output_bytes`.
    pub output: Vec<u8>,
    /// Bytes it wrote in all (more than `output` holds when it exceeded the limit).
    pub output_bytes: u64,
    pub timed_out: bool,
    /// It wrote more than `max_output_bytes` and was stopped.
    pub output_exceeded: bool,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the sandbox is unavailable on this server: {0}")]
    Unavailable(String),
    #[error("the command could not be started: {0}")]
    Spawn(std::io::Error),
    #[error(transparent)]
    Workspace(#[from] FsError),
}

/// Directories under `/` bound read-only into every sandbox (or recreated as the same symbolic
/// link, on merged-`/usr` systems).
const SYSTEM_DIRS: &[&str] = &[
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
];
/// Where, when the server is root, a command's workspace is bound in its own mount namespace
/// (a directory every user can reach; the first that exists).
const STAGES: &[&str] = &["/mnt", "/media", "/srv", "/opt", "/var/tmp"];
const SHELL: &str = "/bin/bash";
/// Sets the process limit inside the sandbox, then runs the command: `$1` limit, `$2` command.
const WRAPPER: &str = r#"ulimit -u "$1" 2>/dev/null || { echo "cannot limit processes" >&2; exit 125; }; exec /bin/bash -c "$2""#;

pub struct Sandbox {
    cfg: SandboxConfig,
    /// Largest file (uploads, `write_file`, and `RLIMIT_FSIZE` for commands).
    max_file_bytes: u64,
    root: PathBuf,
    isolation: Isolation,
    bwrap: PathBuf,
    /// The arguments every command shares (namespaces, binds, masks, environment).
    args: Vec<OsString>,
    /// Set when the server is root: the host user and group commands run as.
    run_as: Option<(u32, u32)>,
    /// Set when the server is root: where the workspace is bound before bubblewrap starts.
    stage: Option<PathBuf>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("root", &self.root)
            .field("isolation", &self.isolation)
            .finish_non_exhaustive()
    }
}

fn find_on_path(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Sandbox {
    /// Set up from the configuration and probe with one real command.
    pub async fn start(config: &Config, instance_id: &str) -> Self {
        let mut sandbox = Self::new(config);
        if let Err(e) = fs::private_dirs(&sandbox.root) {
            tracing::error!(root = %sandbox.root.display(), error = %e,
                "the workspace root cannot be created: uploads and workspace tools will fail");
        }
        if let Isolation::Unavailable(why) = &sandbox.isolation {
            let why = why.clone();
            sandbox.unavailable(why);
            return sandbox;
        }
        match sandbox.probe(instance_id).await {
            Ok(()) => tracing::info!(root = %sandbox.root.display(),
                user = ?sandbox.run_as.map(|(u, _)| u), "sandbox: commands run under bubblewrap"),
            Err(why) => sandbox.unavailable(why),
        }
        sandbox
    }

    fn unavailable(&mut self, why: String) {
        if self.cfg.allow_unsandboxed {
            tracing::warn!(reason = %why,
                "sandbox: bubblewrap does not work here and sandbox.allow_unsandboxed is set: \
                 commands run WITHOUT isolation (network, host files) — for trusted use only");
            self.isolation = Isolation::Unsandboxed;
        } else {
            tracing::error!(reason = %why,
                "sandbox unavailable: run_command answers an error until this is fixed \
                 (or set sandbox.allow_unsandboxed = true to run commands without isolation)");
            self.isolation = Isolation::Unavailable(why);
        }
    }

    /// The sandbox as configured, before the probe.
    fn new(config: &Config) -> Self {
        let cfg = config.sandbox.clone();
        let root = config.workspace_root();
        let root = std::path::absolute(&root).unwrap_or(root);
        let is_root = rustix::process::geteuid().is_root();
        let run_as = is_root.then_some((cfg.uid, cfg.gid));
        let stage = if is_root {
            STAGES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
        } else {
            None
        };
        let mut isolation = Isolation::Bubblewrap;
        let bwrap = match find_on_path(&cfg.bwrap) {
            Some(p) => p,
            None => {
                isolation = Isolation::Unavailable(format!(
                    "bubblewrap ({}) is not installed: install the package `bubblewrap` \
                     (apt-get install bubblewrap, dnf install bubblewrap) or set sandbox.bwrap",
                    cfg.bwrap.display()
                ));
                cfg.bwrap.clone()
            }
        };
        if !Path::new(SHELL).exists() {
            isolation = Isolation::Unavailable(format!("{SHELL} is required for commands"));
        }
        if is_root && stage.is_none() {
            isolation = Isolation::Unavailable(format!(
                "running as root, commands need one of {} as a staging directory",
                STAGES.join(", ")
            ));
        }
        let mut hidden: Vec<PathBuf> = vec![config.data_dir.clone(), root.clone()];
        hidden.extend(config.source.clone());
        let args = fixed_args(&cfg, &hidden);
        Self {
            cfg,
            max_file_bytes: config.runs.max_file_bytes as u64,
            root,
            isolation,
            bwrap,
            args,
            run_as,
            stage,
        }
    }

    /// Run `id -u` in a throwaway workspace: it must succeed, as the expected user.
    async fn probe(&self, instance_id: &str) -> Result<(), String> {
        let name = format!(
            ".probe-{}",
            instance_id
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
        );
        let ws = Workspace::new(self.root.join(name), self.run_as);
        let result = self
            .run(&ws, "id -u", Duration::from_secs(20))
            .await
            .map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&ws.dir);
        let r = result?;
        let out = String::from_utf8_lossy(&r.output).trim().to_owned();
        let expected = self
            .run_as
            .map_or_else(|| rustix::process::geteuid().as_raw(), |(u, _)| u)
            .to_string();
        if r.exit_code == Some(0) && out == expected {
            return Ok(());
        }
        Err(format!(
            "bubblewrap fails here ({}{out}). It needs unprivileged user namespaces: \
             inside a container, allow them (e.g. docker run --security-opt seccomp=unconfined \
             --security-opt apparmor=unconfined, or a privileged pod); on Ubuntu 24.04, set \
             kernel.apparmor_restrict_unprivileged_userns=0; check that user.max_user_namespaces \
             is above 0",
            r.exit_code
                .map_or_else(|| "killed: ".into(), |c| format!("exit {c}: "))
        ))
    }

    /// This node's isolation.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// `/health/detailed`'s word for it: `ok`, `unsandboxed` or `unavailable: …`.
    pub fn health(&self) -> String {
        match &self.isolation {
            Isolation::Bubblewrap => "ok".into(),
            Isolation::Unsandboxed => "unsandboxed".into(),
            Isolation::Unavailable(why) => format!("unavailable: {why}"),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.cfg
    }

    /// Largest file a workspace takes.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// A project's workspace (created on first use): `<root>/<company>/<project>`, so a
    /// project id never reaches another company's files.
    pub fn workspace(&self, company_id: Uuid, project_id: Uuid) -> Workspace {
        Workspace::new(
            self.root
                .join(company_id.to_string())
                .join(project_id.to_string()),
            self.run_as,
        )
    }

    /// The command's wall clock: `requested` seconds (default and maximum from configuration).
    pub fn timeout(&self, requested: Option<u64>) -> Duration {
        let secs = requested
            .unwrap_or(self.cfg.command_timeout_seconds)
            .clamp(1, self.cfg.max_command_timeout_seconds);
        Duration::from_secs(secs)
    }

    /// Run `script` with bash in `ws`, within the limits; ends by `timeout` at the latest.
    /// Dropping the future kills the command.
    pub async fn run(
        &self,
        ws: &Workspace,
        script: &str,
        timeout: Duration,
    ) -> Result<CommandResult, CommandError> {
        if let Isolation::Unavailable(why) = &self.isolation {
            return Err(CommandError::Unavailable(why.clone()));
        }
        ws.blocking(|ws| ws.open_root(true)).await?;
        let (reader, writer) = std::io::pipe().map_err(CommandError::Spawn)?;
        // bubblewrap reports the host pid of its namespace's init on this pipe (`--info-fd`).
        let (info_r, info_w) = std::io::pipe().map_err(CommandError::Spawn)?;
        let mut cmd = self.command(&ws.dir, script, info_w.as_raw_fd())?;
        cmd.stdout(writer.try_clone().map_err(CommandError::Spawn)?)
            .stderr(writer);
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(CommandError::Spawn)?;
        drop(cmd); // our copies of the pipes' write ends: EOF comes when the command's close
        drop(info_w);
        let kill = Kill {
            group: child.id().and_then(|p| i32::try_from(p).ok()),
            init: Arc::new(AtomicI32::new(0)),
        };
        {
            let init = kill.init.clone();
            tokio::task::spawn_blocking(move || read_init_pid(info_r, &init));
        }
        // Dropped before the command ends (the run stopped, the future cancelled): kill it all.
        let mut guard = KillOnDrop(Some(kill.clone()));
        let max = self.cfg.max_output_bytes;
        let on_flood = kill.clone();
        let reading = tokio::task::spawn_blocking(move || read_capped(reader, max, &on_flood));
        let mut timed_out = false;
        let status = tokio::select! {
            s = child.wait() => s,
            () = tokio::time::sleep(timeout) => {
                timed_out = true;
                kill.now();
                child.wait().await
            }
        }
        .map_err(CommandError::Spawn)?;
        guard.0 = None;
        if self.isolation == Isolation::Unsandboxed {
            // Without a PID namespace, what the command left in its group is ended here.
            kill_group(kill.group);
        }
        let (output, output_bytes, output_exceeded) =
            match tokio::time::timeout(Duration::from_secs(5), reading).await {
                Ok(Ok(r)) => r,
                _ => (Vec::new(), 0, false),
            };
        let elapsed = started.elapsed();
        let outcome = if timed_out {
            "timeout"
        } else if output_exceeded {
            "output_limit"
        } else if status.success() {
            "ok"
        } else {
            "error"
        };
        metrics::counter!("cortex_sandbox_commands_total", "outcome" => outcome).increment(1);
        metrics::histogram!("cortex_sandbox_command_seconds").record(elapsed.as_secs_f64());
        Ok(CommandResult {
            exit_code: status.code(),
            signal: status.signal(),
            output,
            output_bytes,
            timed_out,
            output_exceeded,
            elapsed,
        })
    }

    fn command(
        &self,
        dir: &Path,
        script: &str,
        info_fd: RawFd,
    ) -> Result<tokio::process::Command, CommandError> {
        let nproc = self.cfg.max_processes.to_string();
        let mut cmd = match &self.isolation {
            Isolation::Unavailable(why) => return Err(CommandError::Unavailable(why.clone())),
            Isolation::Bubblewrap => {
                let mut c = tokio::process::Command::new(&self.bwrap);
                c.args(&self.args)
                    .arg("--bind")
                    .arg(self.stage.as_deref().unwrap_or(dir))
                    .arg("/workspace")
                    .args(["--info-fd", "3", "--chdir", "/workspace", "--", SHELL]);
                c.env_clear();
                c
            }
            Isolation::Unsandboxed => {
                let mut c = tokio::process::Command::new(SHELL);
                c.current_dir(dir)
                    .env_clear()
                    .env("HOME", dir)
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .env("LANG", "C.UTF-8");
                c
            }
        };
        cmd.args(["-c", WRAPPER, "sandbox", nproc.as_str(), script])
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let limits = [
            (libc::RLIMIT_CPU, self.cfg.cpu_seconds),
            (libc::RLIMIT_AS, self.cfg.memory_bytes),
            (libc::RLIMIT_FSIZE, self.max_file_bytes),
            (libc::RLIMIT_CORE, 0),
            (libc::RLIMIT_NOFILE, 1024),
        ];
        let stage = match (&self.isolation, &self.stage) {
            (Isolation::Bubblewrap, Some(stage)) => Some((cstring(dir)?, cstring(stage)?)),
            _ => None,
        };
        let run_as = self.run_as;
        let info = (self.isolation == Isolation::Bubblewrap).then_some(info_fd);
        // SAFETY: the closure runs in the forked child before exec and makes only
        // async-signal-safe system calls on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || child_setup(&limits, stage.as_ref(), run_as, info));
        }
        Ok(cmd)
    }
}

fn cstring(p: &Path) -> Result<CString, CommandError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| CommandError::Spawn(std::io::Error::other("a path contains a NUL byte")))
}

/// In the child, before exec: the limits; when root, the workspace staged in a private mount
/// namespace and root given up.
fn child_setup(
    limits: &[(libc::__rlimit_resource_t, u64)],
    stage: Option<&(CString, CString)>,
    run_as: Option<(u32, u32)>,
    info_fd: Option<RawFd>,
) -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls with valid pointers (CStrings kept alive by the caller).
    unsafe {
        // bubblewrap's info pipe at fd 3, open across exec.
        if let Some(fd) = info_fd {
            if fd == 3 {
                check(libc::fcntl(3, libc::F_SETFD, 0))?;
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        for &(resource, value) in limits {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            check(libc::setrlimit(resource, &lim))?;
        }
        if let Some((source, target)) = stage {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
        }
        if let Some((uid, gid)) = run_as {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(gid, gid, gid))?;
            check(libc::setresuid(uid, uid, uid))?;
        }
    }
    Ok(())
}

/// The arguments every bubblewrap command shares.
fn fixed_args(cfg: &SandboxConfig, hidden: &[PathBuf]) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv",
        "HOME",
        "/workspace",
        "--setenv",
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "TMPDIR",
        "/tmp",
        "--setenv",
        "TERM",
        "dumb",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let mut bound = Vec::new();
    for name in SYSTEM_DIRS {
        let path = Path::new("/").join(name);
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                a.extend(["--symlink".into(), target.into(), path.into()]);
            }
        } else if meta.is_dir() {
            a.extend(["--ro-bind".into(), path.clone().into(), path.clone().into()]);
            bound.push(path.canonicalize().unwrap_or(path));
        }
    }
    // The server's own files, where a bound directory would show them.
    for h in hidden {
        let Ok(h) = h.canonicalize() else { continue };
        if !bound.iter().any(|b| h.starts_with(b)) {
            continue;
        }
        if h.is_dir() {
            a.extend(["--tmpfs".into(), h.into()]);
        } else {
            a.extend(["--ro-bind".into(), "/dev/null".into(), h.into()]);
        }
    }
    a.extend([
        "--size".into(),
        cfg.tmp_bytes.to_string().into(),
        "--tmpfs".into(),
        "/tmp".into(),
        "--proc".into(),
        "/proc".into(),
        "--dev".into(),
        "/dev".into(),
    ]);
    a
}

/// How to end a command: its process group (bubblewrap, or the shell when unsandboxed) and
/// its PID namespace's init, whose death takes every process of the namespace with it. The
/// init is killed directly rather than trusted to follow bubblewrap's `--die-with-parent`,
/// which was seen not to fire.
#[derive(Clone)]
struct Kill {
    group: Option<i32>,
    /// The init's host pid, from `--info-fd`; 0 until known.
    init: Arc<AtomicI32>,
}

impl Kill {
    fn now(&self) {
        let init = self.init.load(Ordering::SeqCst);
        if init > 1 {
            // SAFETY: a signal to the namespace's init, which this command created.
            unsafe {
                libc::kill(init, libc::SIGKILL);
            }
        }
        kill_group(self.group);
    }
}

/// Kills the command when dropped armed (the future running it was cancelled).
struct KillOnDrop(Option<Kill>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(k) = self.0.take() {
            k.now();
        }
    }
}

/// bubblewrap's `--info-fd` report: `{"child-pid": N, …}`.
fn read_init_pid(mut info: std::io::PipeReader, init: &AtomicI32) {
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    while !text.contains(&b'}') {
        match info.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    let pid = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["child-pid"].as_i64())
        .and_then(|p| i32::try_from(p).ok());
    if let Some(pid) = pid {
        init.store(pid, Ordering::SeqCst);
    }
}

/// Read the command's output: keep up to `max` bytes; past that, stop the command and drain.
fn read_capped(mut reader: std::io::PipeReader, max: u64, kill: &Kill) -> (Vec<u8>, u64, bool) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut exceeded = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        total += n as u64;
        let room = max.saturating_sub(kept.len() as u64) as usize;
        kept.extend_from_slice(&buf[..n.min(room)]);
        if total > max && !exceeded {
            exceeded = true;
            kill.now();
        }
    }
    (kept, total, exceeded)
}

fn kill_group(pid: Option<i32>) {
    if let Some(pid) = pid.filter(|p| *p > 1) {
        // SAFETY: a signal to the process group the command leads (it was made its leader).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}
