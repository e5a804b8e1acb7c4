//! Memory the publisher gives back to the system while it idles: the heap's free pages after
//! each metrics round, and, once start-up is over, its mappings of code only start-up ran.

use std::time::Duration;

/// How long after the service is ready its code mappings are dropped: by then configuration,
/// sign-in and the first rounds of every pipeline have run.
pub const STARTUP_CODE_AFTER: Duration = Duration::from_secs(120);

/// Gives the heap's free pages back to the system after a round: reading hundreds of /proc
/// files leaves freed memory scattered in the allocator's arenas, resident until reused.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Unmaps the pages of executable code (the publisher's and its libraries') from this
/// process, so that only code used from now on is mapped again, on its next call.
///
/// Code is read from its file as it is first run, and the kernel maps each page in with its
/// neighbours (fault-around), so after start-up nearly the whole executable is resident,
/// although most of it (configuration, sign-in, set-up) never runs again. Dropping the
/// mappings costs nothing lasting: the pages stay in the page cache, shared and reclaimable,
/// and code that runs again is mapped back from there. Only read-only executable private file
/// mappings (`r-xp`) are touched; those are never written, so their contents are the file's.
/// Returns how many bytes were unmapped.
pub fn drop_startup_code() -> usize {
    #[cfg(target_os = "linux")]
    {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return 0;
        };
        let mut dropped = 0;
        for (start, end) in maps.lines().filter_map(code_range) {
            // SAFETY: the range is a whole, page-aligned, read-only executable file mapping
            // of this process; MADV_DONTNEED on it only drops page table entries, which the
            // next access refills from the same file.
            if unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            } == 0
            {
                dropped += end - start;
            }
        }
        dropped
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// The address range of a `/proc/self/maps` line that is a private, read-only, executable
/// mapping of a file.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn code_range(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    if fields.next()? != "r-xp" {
        return None;
    }
    // offset, device, inode, then the path: a file, not [vdso] or an anonymous mapping.
    let inode = fields.nth(2)?;
    let path = fields.next()?;
    if inode == "0" || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let (start, end) = (
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    );
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_executable_file_mappings_are_code() {
        assert_eq!(
            code_range("55d0c0a00000-55d0c1200000 r-xp 00200000 fd:01 1234 /usr/bin/publisher"),
            Some((0x55d0c0a00000, 0x55d0c1200000))
        );
        for other in [
            "55d0c0a00000-55d0c1200000 r--p 00000000 fd:01 1234 /usr/bin/publisher",
            "55d0c0a00000-55d0c1200000 rw-p 00000000 fd:01 1234 /usr/bin/publisher",
            "55d0c0a00000-55d0c1200000 r-xs 00000000 fd:01 1234 /dev/shm/x",
            "7ffc8a9f0000-7ffc8a9f2000 r-xp 00000000 00:00 0 [vdso]",
            "7ffc8a9f0000-7ffc8a9f2000 r-xp 00000000 00:00 0",
        ] {
            assert_eq!(code_range(other), None, "{other}");
        }
    }

    #[test]
    fn dropped_code_runs_again() {
        let dropped = drop_startup_code();
        assert!(
            dropped > 0,
            "this test binary has code mapped from its file"
        );
        // Code is mapped back as it runs: formatting, allocation, the file system.
        let text = format!(
            "{:?}",
            std::fs::read_to_string("/proc/self/status").map(|s| s.len())
        );
        assert!(text.starts_with("Ok("), "{text}");
    }
}
