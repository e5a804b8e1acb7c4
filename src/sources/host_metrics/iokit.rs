//! Disk I/O counters on macOS, from IOKit: every block storage driver (`IOBlockStorageDriver`,
//! one per whole disk) keeps a "Statistics" dictionary of bytes, operations and time spent,
//! read and written, since it was started. `iostat` and Activity Monitor read the same.
//!
//! The dictionary's reading ([`DriveStatistics::from_statistics`]) is plain code, tested on
//! every platform with values recorded from a Mac; the IOKit calls (through the objc2-io-kit
//! and objc2-core-foundation crates, which sysinfo already uses on macOS) are macOS only.

/// The counters of one whole disk since its driver started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriveStatistics {
    pub read_ops: u64,
    pub read_bytes: u64,
    /// Time spent reading, in nanoseconds.
    pub read_time_ns: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
    /// Time spent writing, in nanoseconds.
    pub write_time_ns: u64,
}

/// The keys of IOBlockStorageDriver.h (`kIOBlockStorageDriverStatistics…Key`).
pub const STATISTICS: &str = "Statistics";
const BYTES_READ: &str = "Bytes (Read)";
const BYTES_WRITTEN: &str = "Bytes (Write)";
const READS: &str = "Operations (Read)";
const WRITES: &str = "Operations (Write)";
const READ_TIME: &str = "Total Time (Read)";
const WRITE_TIME: &str = "Total Time (Write)";

impl DriveStatistics {
    /// Reads one driver's statistics through `get`, the dictionary's number for a key. The byte
    /// and operation counts must be there; the times count as 0 where a driver leaves them out.
    /// A negative number (a counter IOKit could not give as a signed 64-bit one) is no reading.
    pub fn from_statistics(get: impl Fn(&str) -> Option<i64>) -> Option<DriveStatistics> {
        let n = |key: &str| get(key).and_then(|v| u64::try_from(v).ok());
        Some(DriveStatistics {
            read_ops: n(READS)?,
            read_bytes: n(BYTES_READ)?,
            read_time_ns: n(READ_TIME).unwrap_or(0),
            write_ops: n(WRITES)?,
            write_bytes: n(BYTES_WRITTEN)?,
            write_time_ns: n(WRITE_TIME).unwrap_or(0),
        })
    }
}

/// Every whole disk's statistics by its BSD name (`disk0`, ...); `None` where IOKit could not
/// be asked.
#[cfg(target_os = "macos")]
pub fn read() -> Option<Vec<(String, DriveStatistics)>> {
    use objc2_core_foundation::{
        kCFAllocatorDefault, CFDictionary, CFNumber, CFRetained, CFString, CFType,
    };
    use objc2_io_kit::{
        io_iterator_t, io_object_t, kIORegistryIterateRecursively, kIOServicePlane, IOIteratorNext,
        IOObjectRelease, IORegistryEntryCreateCFProperty, IORegistryEntrySearchCFProperty,
        IOServiceGetMatchingServices, IOServiceMatching,
    };

    /// An IOKit object, released when dropped.
    struct Object(io_object_t);
    impl Drop for Object {
        fn drop(&mut self) {
            IOObjectRelease(self.0);
        }
    }

    // MACH_PORT_NULL asks IOKit's default main port (kIOMainPortDefault is 0, and its name
    // is only in macOS 12 and newer).
    const DEFAULT_PORT: libc::mach_port_t = 0;

    // SAFETY: the name is a NUL-terminated class name.
    let matching = unsafe { IOServiceMatching(c"IOBlockStorageDriver".as_ptr()) }?;
    let matching = CFRetained::<CFDictionary>::from(&matching);
    let mut iterator: io_iterator_t = 0;
    // SAFETY: the lookup takes (and releases) the matching dictionary and writes the iterator.
    let kr = unsafe { IOServiceGetMatchingServices(DEFAULT_PORT, Some(matching), &mut iterator) };
    if kr != libc::KERN_SUCCESS || iterator == 0 {
        return None;
    }
    let iterator = Object(iterator);
    let statistics_key = CFString::from_static_str(STATISTICS);
    let bsd_name_key = CFString::from_static_str("BSD Name");
    let mut out = Vec::new();
    loop {
        let driver = IOIteratorNext(iterator.0);
        if driver == 0 {
            break;
        }
        let driver = Object(driver);
        // SAFETY: a live registry entry, a CFString key, the default allocator; each call
        // returns a retained copy or nothing.
        let statistics = unsafe {
            IORegistryEntryCreateCFProperty(driver.0, Some(&statistics_key), kCFAllocatorDefault, 0)
        };
        // The disk's name is on the IOMedia object below the driver (its first child that has
        // one: the whole disk, before its partitions).
        // SAFETY: as above; the plane is a NUL-terminated name IOKit only reads.
        let name = unsafe {
            IORegistryEntrySearchCFProperty(
                driver.0,
                kIOServicePlane.as_ptr().cast_mut().cast(),
                Some(&bsd_name_key),
                kCFAllocatorDefault,
                kIORegistryIterateRecursively,
            )
        };
        let (Some(statistics), Some(name)) = (statistics, name) else {
            continue;
        };
        let (Ok(statistics), Ok(name)) = (
            statistics.downcast::<CFDictionary>(),
            name.downcast::<CFString>(),
        ) else {
            continue;
        };
        // SAFETY: the dictionary is IOKit's copy, keyed by strings; values are checked to be
        // numbers before they are read.
        let statistics: &CFDictionary<CFString, CFType> = unsafe { statistics.cast_unchecked() };
        let get = |key: &str| {
            statistics
                .get(&CFString::from_str(key))?
                .downcast::<CFNumber>()
                .ok()?
                .as_i64()
        };
        if let Some(s) = DriveStatistics::from_statistics(get) {
            out.push((name.to_string(), s));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// One `Statistics` dictionary as `ioreg -c IOBlockStorageDriver -r` prints it on a Mac
    /// (an internal SSD), read into key → number.
    fn recorded(text: &str) -> HashMap<String, i64> {
        text.trim_matches(['{', '}'])
            .split(',')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.trim_matches('"').to_owned(), v.parse().ok()?))
            })
            .collect()
    }

    const SSD: &str = r#"{"Operations (Write)"=1012953,"Latency Time (Write)"=0,"Bytes (Read)"=31897657344,"Errors (Write)"=0,"Total Time (Read)"=658433335156,"Latency Time (Read)"=0,"Retries (Read)"=0,"Errors (Read)"=0,"Total Time (Write)"=67313671632,"Bytes (Write)"=14319661056,"Operations (Read)"=2416853,"Retries (Write)"=0}"#;

    #[test]
    fn reads_a_drivers_statistics() {
        let stats = recorded(SSD);
        assert_eq!(stats.len(), 12);
        let s = DriveStatistics::from_statistics(|k| stats.get(k).copied()).unwrap();
        assert_eq!(
            s,
            DriveStatistics {
                read_ops: 2_416_853,
                read_bytes: 31_897_657_344,
                read_time_ns: 658_433_335_156,
                write_ops: 1_012_953,
                write_bytes: 14_319_661_056,
                write_time_ns: 67_313_671_632,
            }
        );
    }

    #[test]
    fn needs_the_counts_and_takes_missing_times_as_zero() {
        // A disk image's driver, with the counts only.
        let stats = recorded(
            r#"{"Operations (Write)"=909,"Bytes (Read)"=3394316288,"Bytes (Write)"=4335616,"Operations (Read)"=23043}"#,
        );
        let s = DriveStatistics::from_statistics(|k| stats.get(k).copied()).unwrap();
        assert_eq!(
            (s.read_ops, s.write_bytes, s.read_time_ns),
            (23_043, 4_335_616, 0)
        );

        // Without a count, or with one that does not fit, there is no reading.
        let mut partial = recorded(SSD);
        partial.remove("Bytes (Write)");
        assert_eq!(
            DriveStatistics::from_statistics(|k| partial.get(k).copied()),
            None
        );
        let mut negative = recorded(SSD);
        negative.insert("Operations (Read)".into(), -1);
        assert_eq!(
            DriveStatistics::from_statistics(|k| negative.get(k).copied()),
            None
        );
    }
}
