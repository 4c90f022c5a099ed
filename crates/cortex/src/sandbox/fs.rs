//! A workspace's files as the server touches them (uploads, the file endpoints, `list_files`,
//! `read_file`, `write_file`). Every path is resolved by the kernel beneath the workspace
//! directory (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`): `..`, absolute paths and
//! symbolic links that lead outside fail with an error instead of reaching a host file, also
//! when a command swaps a link between a check and an open (there is no check apart from the
//! open). Reads open with `O_NONBLOCK` and accept only regular files, so a FIFO the agent made
//! cannot hang the server. Blocking: callers run these on the blocking pool.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// What went wrong with a workspace path or file.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Malformed, or leading outside the workspace (`..`, absolute, a link out): never followed.
    #[error("{0}")]
    BadPath(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("{0} is not a directory")]
    NotADirectory(String),
    /// Over the per-file or per-workspace limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("workspace I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One file of a listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct FileEntry {
    /// Relative to the workspace (`/workspace` as the agent sees it).
    pub path: String,
    pub size: u64,
    pub modified_at: DateTime<Utc>,
}

/// Most entries one listing walks; a workspace with more is listed up to here.
pub const MAX_LISTED: usize = 100_000;
/// Deepest directory nesting a walk descends into.
const MAX_DEPTH: usize = 64;

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

/// A path as the agent or a client gives it (relative to `/workspace`, or absolute under it) as
/// a relative path without `.` or `..`; empty means the workspace itself.
pub fn relative(raw: &str) -> Result<PathBuf, FsError> {
    if raw.chars().any(char::is_control) {
        return Err(FsError::BadPath(
            "a path may not contain control characters".into(),
        ));
    }
    let rest = if raw == "/workspace" {
        ""
    } else if let Some(rest) = raw.strip_prefix("/workspace/") {
        rest
    } else if raw.starts_with('/') {
        return Err(FsError::BadPath(format!(
            "{raw} is outside /workspace: give a path relative to /workspace or under it"
        )));
    } else {
        raw
    };
    let mut out = PathBuf::new();
    for c in Path::new(rest).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(FsError::BadPath(format!(
                    "{raw}: a path may not contain `..`"
                )));
            }
        }
    }
    Ok(out)
}

fn shown(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        "/workspace".into()
    } else {
        rel.display().to_string()
    }
}

fn errno(e: Errno, rel: &Path) -> FsError {
    let name = shown(rel);
    match e {
        Errno::XDEV => FsError::BadPath(format!("{name} leads outside /workspace")),
        Errno::LOOP => FsError::BadPath(format!(
            "{name} is a symbolic link that cannot be followed here"
        )),
        Errno::NOENT => FsError::NotFound(name),
        Errno::NOTDIR => FsError::NotADirectory(name),
        Errno::ISDIR | Errno::NXIO => FsError::NotAFile(name),
        Errno::NAMETOOLONG => FsError::BadPath(format!("{name}: the name is too long")),
        other => FsError::Io(other.into()),
    }
}

fn open_beneath(dir: impl AsFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, FsError> {
    let p = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    // openat2 refuses a mode without O_CREAT.
    let mode = if flags.contains(OFlags::CREATE) {
        Mode::from_raw_mode(0o644)
    } else {
        Mode::empty()
    };
    rustix::fs::openat2(dir, p, flags | OFlags::CLOEXEC, mode, resolve()).map_err(|e| errno(e, rel))
}

fn modified(st: &rustix::fs::Stat) -> DateTime<Utc> {
    DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32).unwrap_or_default()
}

/// One project's workspace directory.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub dir: PathBuf,
    /// The host user and group files are given to (the sandbox user, when the server is root).
    owner: Option<(u32, u32)>,
}

impl Workspace {
    pub fn new(dir: PathBuf, owner: Option<(u32, u32)>) -> Self {
        Self { dir, owner }
    }

    /// Run `f` on this workspace on the blocking pool (file system calls block).
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Workspace) -> Result<T, FsError> + Send + 'static,
    ) -> Result<T, FsError> {
        let ws = self.clone();
        tokio::task::spawn_blocking(move || f(&ws))
            .await
            .map_err(|e| FsError::Io(std::io::Error::other(e)))?
    }

    fn give(&self, fd: impl AsFd) -> Result<(), FsError> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(fd, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// The workspace directory, opened; created (private to its owner) when `create`.
    /// `None`: it does not exist yet.
    pub fn open_root(&self, create: bool) -> Result<Option<OwnedFd>, FsError> {
        if create {
            if let Some(parent) = self.dir.parent() {
                private_dirs(parent)?;
            }
            match std::fs::create_dir(&self.dir) {
                Ok(()) => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
                    if let Some((uid, gid)) = self.owner {
                        std::os::unix::fs::chown(&self.dir, Some(uid), Some(gid))?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        match rustix::fs::open(
            &self.dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(FsError::Io(e.into())),
        }
    }

    fn existing_root(&self, rel: &Path) -> Result<OwnedFd, FsError> {
        self.open_root(false)?
            .ok_or_else(|| FsError::NotFound(shown(rel)))
    }

    /// Regular files under `path` (recursive), sorted by path; at most [`MAX_LISTED`].
    /// Symbolic links are not followed and not listed.
    pub fn list(&self, path: &str) -> Result<Vec<FileEntry>, FsError> {
        let rel = relative(path)?;
        let Some(root) = self.open_root(false)? else {
            return if rel.as_os_str().is_empty() {
                Ok(Vec::new())
            } else {
                Err(FsError::NotFound(shown(&rel)))
            };
        };
        let start = open_beneath(&root, &rel, OFlags::DIRECTORY | OFlags::RDONLY)?;
        let mut out = Vec::new();
        walk(start, rel, &mut out, MAX_LISTED)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Bytes held by the workspace's regular files.
    pub fn usage(&self) -> Result<u64, FsError> {
        let Some(root) = self.open_root(false)? else {
            return Ok(0);
        };
        let mut out = Vec::new();
        walk(root, PathBuf::new(), &mut out, usize::MAX)?;
        Ok(out.iter().map(|f| f.size).sum())
    }

    /// A regular file, opened for reading, and its size.
    pub fn open_file(&self, path: &str) -> Result<(File, u64), FsError> {
        let rel = relative(path)?;
        if rel.as_os_str().is_empty() {
            return Err(FsError::NotAFile("/workspace".into()));
        }
        let root = self.existing_root(&rel)?;
        let fd = open_beneath(&root, &rel, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| errno(e, &rel))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(FsError::NotAFile(shown(&rel)));
        }
        Ok((File::from(fd), st.st_size as u64))
    }

    /// Up to `max` bytes of a regular file, and its whole size.
    pub fn read(&self, path: &str, max: u64) -> Result<(Vec<u8>, u64), FsError> {
        let (file, size) = self.open_file(path)?;
        let mut bytes = Vec::with_capacity(size.min(max) as usize);
        file.take(max).read_to_end(&mut bytes)?;
        Ok((bytes, size))
    }

    /// Write `content` to `path` (replacing it), creating its directories; within the limits.
    pub fn write(
        &self,
        path: &str,
        content: &[u8],
        max_file: u64,
        max_workspace: u64,
    ) -> Result<String, FsError> {
        let rel = relative(path)?;
        let Some(name) = rel.file_name().map(ToOwned::to_owned) else {
            return Err(FsError::BadPath("a file path is required".into()));
        };
        if content.len() as u64 > max_file {
            return Err(FsError::TooLarge(format!(
                "{} bytes exceed the file limit of {max_file} bytes",
                content.len()
            )));
        }
        let root = self
            .open_root(true)?
            .ok_or_else(|| FsError::NotFound(shown(&rel)))?;
        let replaced = match open_beneath(&root, &rel, OFlags::PATH) {
            Ok(fd) => rustix::fs::fstat(&fd).map_or(0, |st| st.st_size as u64),
            Err(_) => 0,
        };
        let used = self.usage()?;
        if used.saturating_sub(replaced) + content.len() as u64 > max_workspace {
            return Err(FsError::TooLarge(format!(
                "the workspace would exceed its limit of {max_workspace} bytes"
            )));
        }
        let parent = self.make_dirs(root, rel.parent().unwrap_or(Path::new("")))?;
        let fd = open_beneath(
            &parent,
            Path::new(&name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        )?;
        let st = rustix::fs::fstat(&fd).map_err(|e| errno(e, &rel))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(FsError::NotAFile(shown(&rel)));
        }
        self.give(&fd)?;
        File::from(fd).write_all(content)?;
        Ok(rel.display().to_string())
    }

    /// Each directory of `rel` beneath `root`, created when missing; the innermost, opened.
    fn make_dirs(&self, root: OwnedFd, rel: &Path) -> Result<OwnedFd, FsError> {
        let mut dir = root;
        let mut so_far = PathBuf::new();
        for part in rel.components() {
            so_far.push(part);
            match rustix::fs::mkdirat(&dir, part.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    let created = open_beneath(
                        &dir,
                        Path::new(part.as_os_str()),
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW,
                    )?;
                    self.give(&created)?;
                    dir = created;
                    continue;
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(errno(e, &so_far)),
            }
            dir = open_beneath(
                &dir,
                Path::new(part.as_os_str()),
                OFlags::DIRECTORY | OFlags::RDONLY,
            )?;
        }
        Ok(dir)
    }

    /// Store an upload at the top of the workspace under `name` (already a plain file name), or
    /// `stem (1).ext`, `stem (2).ext`… when the name is taken; the name used is returned.
    pub fn place(&self, name: &str, content: &[u8]) -> Result<String, FsError> {
        let root = self
            .open_root(true)?
            .ok_or_else(|| FsError::NotFound("/workspace".into()))?;
        for i in 0..10_000u32 {
            let candidate = if i == 0 {
                name.to_owned()
            } else {
                suffixed(name, i)
            };
            match rustix::fs::openat2(
                &root,
                candidate.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
                resolve(),
            ) {
                Ok(fd) => {
                    self.give(&fd)?;
                    let mut file = File::from(fd);
                    if let Err(e) = file.write_all(content) {
                        let _ = rustix::fs::unlinkat(&root, candidate.as_str(), AtFlags::empty());
                        return Err(e.into());
                    }
                    return Ok(candidate);
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(errno(e, Path::new(&candidate))),
            }
        }
        Err(FsError::BadPath(format!("no free name for {name}")))
    }

    /// Remove top-level files placed by [`Workspace::place`] (a start that failed after them);
    /// the workspace directory too when that leaves it empty.
    pub fn remove(&self, names: &[String]) {
        let Ok(Some(root)) = self.open_root(false) else {
            return;
        };
        for n in names {
            let _ = rustix::fs::unlinkat(&root, n.as_str(), AtFlags::empty());
        }
        drop(root);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `path` and its missing parents, created readable by their owner only.
pub fn private_dirs(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// `report.pdf` → `report (2).pdf`; `.env` → `.env (2)`.
fn suffixed(name: &str, i: u32) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({i}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({i})"),
    }
}

/// Regular files under the directory `start` (whose relative path is `prefix`), depth-first.
fn walk(
    start: OwnedFd,
    prefix: PathBuf,
    out: &mut Vec<FileEntry>,
    cap: usize,
) -> Result<(), FsError> {
    let mut stack = vec![(start, prefix, 0usize)];
    while let Some((fd, prefix, depth)) = stack.pop() {
        let dir = rustix::fs::Dir::read_from(&fd).map_err(|e| errno(e, &prefix))?;
        for entry in dir {
            let entry = entry.map_err(|e| errno(e, &prefix))?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let Ok(st) = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue; // gone meanwhile
            };
            let path = prefix.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {
                    if out.len() >= cap {
                        return Ok(());
                    }
                    out.push(FileEntry {
                        path: path.to_string_lossy().into_owned(),
                        size: st.st_size as u64,
                        modified_at: modified(&st),
                    });
                }
                FileType::Directory if depth < MAX_DEPTH => {
                    if let Ok(sub) = rustix::fs::openat2(
                        &fd,
                        name,
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        resolve(),
                    ) {
                        stack.push((sub, path, depth + 1));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path().join("w"), None);
        (dir, ws)
    }

    #[test]
    fn paths_stay_beneath_the_workspace() {
        assert_eq!(relative("a/./b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(relative("/workspace/a").unwrap(), PathBuf::from("a"));
        assert_eq!(relative("/workspace").unwrap(), PathBuf::new());
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "/workspacex/a",
            "a\u{0}b",
            "a\nb",
        ] {
            assert!(matches!(relative(bad), Err(FsError::BadPath(_))), "{bad:?}");
        }
    }

    #[test]
    fn write_read_list_and_clashing_uploads() {
        let (_d, ws) = ws();
        assert!(ws.list("").unwrap().is_empty(), "no workspace yet: empty");
        ws.write("src/main.py", b"print(1)", 100, 1000).unwrap();
        assert_eq!(ws.place("data.csv", b"a,b").unwrap(), "data.csv");
        assert_eq!(ws.place("data.csv", b"c,d").unwrap(), "data (1).csv");
        let listed: Vec<(String, u64)> = ws
            .list("")
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.size))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("data (1).csv".to_string(), 3),
                ("data.csv".to_string(), 3),
                ("src/main.py".to_string(), 8)
            ]
        );
        assert_eq!(
            ws.read("/workspace/src/main.py", 100).unwrap().0,
            b"print(1)"
        );
        assert_eq!(ws.read("data.csv", 1).unwrap(), (b"a".to_vec(), 3));
        assert_eq!(ws.usage().unwrap(), 14);
        // Limits: per file, per workspace (the replaced file's bytes do not count twice).
        assert!(matches!(
            ws.write("x", &[0; 101], 100, 1000),
            Err(FsError::TooLarge(_))
        ));
        assert!(matches!(
            ws.write("x", &[0; 990], 1000, 1000),
            Err(FsError::TooLarge(_))
        ));
        ws.write("src/main.py", &[0; 900], 1000, 1000).unwrap();
        ws.remove(&["data.csv".into()]);
        assert!(matches!(ws.read("data.csv", 1), Err(FsError::NotFound(_))));
    }

    #[test]
    fn links_out_of_the_workspace_are_never_followed() {
        let (d, ws) = ws();
        ws.write("ok.txt", b"ok", 100, 1000).unwrap();
        std::fs::write(d.path().join("secret"), b"host secret").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ws.dir.join("passwd")).unwrap();
        std::os::unix::fs::symlink("../secret", ws.dir.join("up")).unwrap();
        std::os::unix::fs::symlink("..", ws.dir.join("parent")).unwrap();
        std::os::unix::fs::symlink("ok.txt", ws.dir.join("inside")).unwrap();
        for p in ["passwd", "up", "parent/secret", "/workspace/up"] {
            assert!(matches!(ws.read(p, 100), Err(FsError::BadPath(_))), "{p}");
        }
        // A link that stays inside is followed for reading, never written through.
        assert_eq!(ws.read("inside", 100).unwrap().0, b"ok");
        assert!(ws.write("inside", b"x", 100, 1000).is_err());
        assert!(ws.write("up", b"x", 100, 1000).is_err());
        assert!(ws.write("parent/evil", b"x", 100, 1000).is_err());
        assert_eq!(
            std::fs::read(d.path().join("secret")).unwrap(),
            b"host secret"
        );
        assert!(!d.path().join("evil").exists());
        // Links are not listed; a directory is not a file.
        let listed: Vec<String> = ws.list("").unwrap().into_iter().map(|f| f.path).collect();
        assert_eq!(listed, vec!["ok.txt"]);
        assert!(matches!(ws.read("", 1), Err(FsError::NotAFile(_))));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_d, ws) = ws();
        ws.write("a", b"", 10, 10).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(ws.dir.join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        assert!(matches!(ws.read("fifo", 10), Err(FsError::NotAFile(_))));
        assert!(ws.write("fifo", b"x", 10, 10).is_err());
    }
}
