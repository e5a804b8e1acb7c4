//! Small files the publisher reads again after a restart (log positions, the metrics spool, an
//! EMF buffer's destination, the config `configure` writes), written as a power cut would find
//! them: the old one or the new one, whole. Each is written to a temporary file beside it,
//! fsynced, renamed over it, and its folder fsynced so that the rename itself is on the disk.
//!
//! The temporary file may sit in a folder another user can write (the service user's state
//! directory, with `configure` run as root): it is created new, never opened through a link
//! planted at its name, and a stale one from a crash is removed first, so it never makes every
//! later write fail.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `bytes`: a temporary file beside it, fsync, rename, fsync the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, 0o666, None)
}

/// Like [`write_atomically`] for a file holding secrets: mode 0600, and as root given `owner`
/// (uid, gid) so that, say, the service user keeps reading a file root rewrote.
#[cfg(any(feature = "provision", feature = "configure"))]
pub fn write_private(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>) -> std::io::Result<()> {
    replace(path, bytes, 0o600, owner)
}

fn replace(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = create_temporary(&tmp, mode)?;
    if let Some((uid, gid)) = owner {
        match std::os::unix::fs::fchown(&f, Some(uid), Some(gid)) {
            Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => {
                drop(f);
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            _ => {}
        }
    }
    // On a full disk (or any failure) the file in place stays as it was, and the partial
    // temporary file goes, so that it holds no space.
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    sync_folder(path)
}

/// Creates the temporary file `tmp`, mode `mode` (less the umask), for this write alone: a
/// file left there by a crash is removed first, and whatever is at the name when it is
/// created (a link planted meanwhile, say) makes it fail rather than be followed.
pub fn create_temporary(tmp: &Path, mode: u32) -> std::io::Result<File> {
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(tmp)
}

/// Flushes `path`'s folder, so that a file just made or renamed in it is there after a power cut.
pub fn sync_folder(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("root-owned");
        std::fs::write(&victim, "keep me\n").unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, path.with_extension("tmp")).unwrap();
        write_atomically(&path, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_stale_temporary_file_does_not_stop_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(path.with_extension("tmp"), "half a write").unwrap();
        write_atomically(&path, b"whole\n").unwrap();
        write_atomically(&path, b"again\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "again\n");
    }

    #[test]
    fn the_file_replaced_is_a_link_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("root-owned");
        std::fs::write(&victim, "keep me\n").unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomically(&path, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }
}
