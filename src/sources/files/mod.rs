//! Log files: which paths a `collect_list` entry names (now and later), and following each.

mod lines;
pub mod multiline;
pub mod removal;
mod tailer;
pub mod timestamp;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use lines::{Encoding, LineBuffer};
pub use tailer::{
    fingerprint, FileKey, FilePosition, Fingerprint, LineSink, Look, PositionStore, StartAt, Step,
    Tailer, CHUNK, FINGERPRINT_BYTES, ROTATE_QUIET,
};

/// Which paths are being followed and which files are open, across all entries: a file
/// matched twice is read once, and a rotated file still being finished is not picked up again
/// under its new name.
#[derive(Debug, Default)]
pub struct Registry {
    /// Path → index of the `collect_list` entry following it.
    paths: Mutex<HashMap<PathBuf, usize>>,
    /// (device, inode) of open files, with how many tailers have each open.
    open: Mutex<HashMap<(u64, u64), usize>>,
    /// Paths already warned about, so each warning is given once.
    warned: Mutex<HashSet<PathBuf>>,
    /// Rotated files finished by their tailers, for `auto_removal`.
    retired: Mutex<Vec<removal::Retired>>,
}

/// What [`Registry::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The caller follows the path now.
    Claimed,
    /// The same entry follows it already.
    Mine,
    /// Another entry (this index) follows it.
    Taken(usize),
}

impl Registry {
    pub fn claim(&self, path: &Path, entry: usize) -> Claim {
        let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        match paths.get(path) {
            Some(&e) if e == entry => Claim::Mine,
            Some(&e) => Claim::Taken(e),
            None => {
                paths.insert(path.to_owned(), entry);
                Claim::Claimed
            }
        }
    }

    pub fn release(&self, path: &Path) {
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
    }

    pub fn opened(&self, dev: u64, ino: u64) {
        *self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((dev, ino))
            .or_default() += 1;
    }

    pub fn closed(&self, dev: u64, ino: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&(dev, ino)) {
            *n -= 1;
            if *n == 0 {
                open.remove(&(dev, ino));
            }
        }
    }

    pub fn is_open(&self, dev: u64, ino: u64) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&(dev, ino))
    }

    /// Hands a finished rotated file to the remover (left in place if too many wait).
    pub fn retire(&self, r: removal::Retired) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        if retired.len() < removal::MAX_WAITING {
            retired.push(r);
        }
    }

    pub fn take_retired(&self) -> Vec<removal::Retired> {
        std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True the first time it is asked about `path`.
    pub fn first_warning(&self, path: &Path) -> bool {
        self.warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned())
    }
}

/// Whether a `file_path` is a pattern rather than one path.
pub fn is_pattern(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Whether the folder of `path` is on a network file system (NFS, SMB, a FUSE mount...), whose
/// calls can hang for as long as the server is away: its reader then makes every call on the
/// blocking pool, so a hung mount stalls only that reader. Blocking.
pub fn on_network_fs(path: &Path) -> bool {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
    else {
        return false;
    };
    // SAFETY: `c` is a valid C string, and `fs` a buffer statfs fills.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut fs) } != 0 {
        return false;
    }
    is_network_fs(&fs)
}

#[cfg(target_os = "linux")]
fn is_network_fs(fs: &libc::statfs) -> bool {
    // The magic numbers of statfs(2): NFS, SMB, CIFS, SMB2, FUSE (sshfs and the like), Ceph,
    // 9P, AFS, Coda, NCP.
    const NETWORK: [u32; 10] = [
        0x6969,
        0x517B,
        0xFF53_4D42,
        0xFE53_4D42,
        0x6573_5546,
        0x00C3_6400,
        0x0102_1997,
        0x5346_414F,
        0x7375_7245,
        0x564C,
    ];
    NETWORK.contains(&(fs.f_type as u32))
}

#[cfg(not(target_os = "linux"))]
fn is_network_fs(fs: &libc::statfs) -> bool {
    let name: Vec<u8> = fs
        .f_fstypename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    matches!(
        &name[..],
        b"nfs" | b"smbfs" | b"afpfs" | b"webdav" | b"macfuse" | b"osxfuse" | b"cifs"
    )
}

/// The regular files a pattern matches now (`**` matches any number of folders).
pub fn expand(pattern: &str) -> Vec<PathBuf> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    match glob::glob_with(pattern, options) {
        Ok(paths) => paths
            .flatten()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether `path` is the publisher's own log (or one of its rotated copies): shipping it would
/// log every shipment, which is shipped, and so on.
pub fn is_own_log(path: &Path, own: &Path) -> bool {
    let canon = |p: &Path| -> Option<(PathBuf, std::ffi::OsString)> {
        let dir = p.parent()?;
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        Some((dir, p.file_name()?.to_owned()))
    };
    let (Some((dir, name)), Some((own_dir, own_name))) = (canon(path), canon(own)) else {
        return false;
    };
    if dir != own_dir {
        return false;
    }
    let (name, own_name) = (name.to_string_lossy(), own_name.to_string_lossy());
    name == own_name
        || name
            .strip_prefix(own_name.as_ref())
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod network_fs_tests {
    use super::*;

    #[test]
    fn local_folders_are_not_network_file_systems() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!on_network_fs(&dir.path().join("app.log")));
        assert!(!on_network_fs(Path::new("relative.log")));
        assert!(!on_network_fs(Path::new("/no/such/folder/app.log")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_log_and_its_rotations_are_recognised() {
        let own = Path::new("/var/log/pub/publisher.log");
        assert!(is_own_log(Path::new("/var/log/pub/publisher.log"), own));
        assert!(is_own_log(Path::new("/var/log/pub/publisher.log.3"), own));
        assert!(!is_own_log(
            Path::new("/var/log/pub/publisher.log.bak"),
            own
        ));
        assert!(!is_own_log(Path::new("/var/log/pub/other.log"), own));
        assert!(!is_own_log(Path::new("/var/log/publisher.log"), own));
    }

    #[test]
    fn patterns_match_files_recursively_and_skip_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("c.log")).unwrap();
        std::fs::write(dir.path().join("x.log"), "").unwrap();
        std::fs::write(dir.path().join("a/b/y.log"), "").unwrap();
        std::fs::write(dir.path().join("a/z.txt"), "").unwrap();
        let mut found = expand(&format!("{}/**/*.log", dir.path().display()));
        found.sort();
        assert_eq!(
            found,
            [dir.path().join("a/b/y.log"), dir.path().join("x.log")]
        );
        assert!(is_pattern("/var/log/*.log") && !is_pattern("/var/log/syslog"));
    }
}
