//! A bounded on-disk queue for metric records CloudWatch has not accepted yet.
//!
//! Each failed request becomes one segment file, written to a temp name, fsynced and renamed, and
//! its folder fsynced ([`crate::durable`]), so a crash or a power cut leaves either the whole
//! segment or none. Segments are read back oldest first. The spool
//! never holds data CloudWatch would refuse (older than 14 days) and never grows past its size
//! cap: the oldest segments go first, with a warning.

use std::fs;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metric::MetricRecord;

/// PutMetricData accepts timestamps up to two weeks old; keep a margin for the trip.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000 - 10 * 60 * 1000;
/// Segment format, first line of each file.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    version: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics spool {}: {source}", path.display())]
pub struct SpoolError {
    pub path: PathBuf,
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    seq: u64,
    bytes: u64,
}

/// What [`Spool::read_oldest`] found.
#[derive(Debug)]
pub struct Unsent {
    pub segments: Vec<Segment>,
    pub records: Vec<MetricRecord>,
    /// Records dropped because they were too old for CloudWatch.
    pub expired: usize,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segments: Vec<Segment>,
    next_seq: u64,
    /// The disk was full at the last append (said once, until there is room again).
    short_of_space: bool,
}

impl Spool {
    /// Opens (creating) the spool directory and lists what an earlier run left in it.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(err(dir))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(err(dir))? {
            let entry = entry.map_err(err(dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(".jsonl")
                .and_then(|s| s.parse::<u64>().ok())
            {
                let bytes = entry.metadata().map_err(err(&path))?.len();
                segments.push(Segment { path, seq, bytes });
            } else if name.ends_with(".tmp") {
                // A write that did not finish: its data was never counted as spooled.
                let _ = fs::remove_file(&path);
            }
        }
        segments.sort_by_key(|s| s.seq);
        let next_seq = segments.last().map_or(1, |s| s.seq + 1);
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            segments,
            next_seq,
            short_of_space: false,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Stores records durably. Returns how many older datums were dropped to stay in the cap,
    /// or to make room on a full disk (oldest first; said once until there is room again).
    pub fn append(&mut self, records: &[MetricRecord]) -> Result<usize, SpoolError> {
        if records.is_empty() {
            return Ok(0);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(format!("{seq:020}.jsonl"));
        let mut body = serde_json::to_string(&Header {
            version: FORMAT_VERSION,
        })
        .expect("header serializes");
        body.push('\n');
        for r in records {
            body.push_str(&serde_json::to_string(r).expect("records serialize"));
            body.push('\n');
        }
        let mut dropped = 0;
        loop {
            // Written beside as `<seq>.tmp`, which `open` removes when a crash left it.
            match crate::durable::write_atomically(&path, body.as_bytes()).map_err(err(&path)) {
                Ok(()) => break,
                Err(e) => {
                    // Out of space: the oldest records make room for the newest.
                    if !is_out_of_space(&e.source) || self.segments.is_empty() {
                        return Err(e);
                    }
                    if !self.short_of_space {
                        self.short_of_space = true;
                        tracing::warn!(dir = %self.dir.display(), error = %e.source,
                            "The disk is full: dropping the oldest spooled metrics to make room for new ones.");
                    }
                    dropped += self.drop_oldest()?;
                }
            }
        }
        if self.short_of_space && dropped == 0 {
            self.short_of_space = false;
            tracing::info!(dir = %self.dir.display(), "The metrics spool has room on disk again.");
        }
        self.segments.push(Segment {
            path,
            seq,
            bytes: body.len() as u64,
        });
        Ok(dropped + self.enforce_cap()?)
    }

    /// Deletes the oldest segment; returns the datums it held.
    fn drop_oldest(&mut self) -> Result<usize, SpoolError> {
        let oldest = self.segments.remove(0);
        let datums = read_segment(&oldest.path)
            .map(|r| r.iter().map(MetricRecord::datum_count).sum::<usize>())
            .unwrap_or(0);
        fs::remove_file(&oldest.path).map_err(err(&oldest.path))?;
        Ok(datums)
    }

    /// Drops the oldest segments while the spool is over its cap; returns the datums dropped.
    fn enforce_cap(&mut self) -> Result<usize, SpoolError> {
        let mut dropped = 0;
        while self.bytes() > self.max_bytes && self.segments.len() > 1 {
            dropped += self.drop_oldest()?;
        }
        Ok(dropped)
    }

    /// Reads the oldest segments, as many as fit in `max_datums` (at least one segment), leaving
    /// them on disk until [`Spool::remove`], each restamped by `restamp` before its age is judged.
    /// Unreadable segments are set aside as `.corrupt`.
    pub fn read_oldest(
        &mut self,
        max_datums: usize,
        now_ms: i64,
        restamp: impl Fn(&mut MetricRecord),
    ) -> Unsent {
        let mut out = Unsent {
            segments: Vec::new(),
            records: Vec::new(),
            expired: 0,
        };
        let mut datums = 0;
        let mut i = 0;
        while i < self.segments.len() {
            let seg = self.segments[i].clone();
            let records = match read_segment(&seg.path) {
                Ok(records) => records,
                Err(e) => {
                    tracing::error!(path = %seg.path.display(), error = %e, "Metrics spool segment is unreadable; setting it aside.");
                    let _ = fs::rename(&seg.path, seg.path.with_extension("corrupt"));
                    self.segments.remove(i);
                    continue;
                }
            };
            let (fresh, old): (Vec<_>, Vec<_>) = records
                .into_iter()
                .map(|mut r| {
                    restamp(&mut r);
                    r
                })
                .partition(|r| now_ms - r.timestamp_ms <= MAX_AGE_MS);
            let n: usize = fresh.iter().map(MetricRecord::datum_count).sum();
            if !out.segments.is_empty() && datums + n > max_datums {
                break;
            }
            datums += n;
            out.expired += old.len();
            out.records.extend(fresh);
            out.segments.push(seg);
            i += 1;
        }
        out
    }

    /// Deletes segments whose records CloudWatch has accepted.
    pub fn remove(&mut self, segments: &[Segment]) -> Result<(), SpoolError> {
        for seg in segments {
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SpoolError {
                        path: seg.path.clone(),
                        source: e,
                    })
                }
            }
            self.segments.retain(|s| s.seq != seg.seq);
        }
        Ok(())
    }
}

/// ENOSPC or EDQUOT: no room on the file system (for this user).
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn read_segment(path: &Path) -> io::Result<Vec<MetricRecord>> {
    let f = io::BufReader::new(fs::File::open(path)?);
    let mut lines = f.lines();
    let header: Header = match lines.next() {
        Some(line) => serde_json::from_str(&line?)?,
        None => return Err(io::Error::new(io::ErrorKind::InvalidData, "empty segment")),
    };
    if header.version != FORMAT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown format version {}", header.version),
        ));
    }
    let mut records = Vec::new();
    for line in lines {
        records.push(serde_json::from_str(&line?)?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Measurement, Unit};

    fn record(ts: i64) -> MetricRecord {
        MetricRecord {
            namespace: "NS".into(),
            dimensions: vec![("InstanceId".into(), "x".into())],
            timestamp_ms: ts,
            storage_resolution: 60,
            values: (0..13)
                .map(|i| Measurement::single(format!("M{i}"), Unit::BytesPerSecond, 1.5))
                .collect(),
            unsynced: None,
        }
    }

    #[test]
    fn survives_reopening_and_reads_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::metric::now_ms();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[record(now - 3000)]).unwrap();
        s.append(&[record(now - 2000), record(now - 1000)]).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 2);
        let u = s.read_oldest(1000, now, |_| {});
        assert_eq!(
            u.records.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(),
            vec![now - 3000, now - 2000, now - 1000]
        );
        assert_eq!(u.records[0], record(now - 3000));
        s.remove(&u.segments).unwrap();
        assert!(s.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn reads_at_most_the_datums_asked_for_but_at_least_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::metric::now_ms();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..5 {
            s.append(&[record(now - i)]).unwrap();
        }
        let u = s.read_oldest(30, now, |_| {});
        assert_eq!((u.segments.len(), u.records.len()), (2, 2));
        let u = s.read_oldest(1, now, |_| {});
        assert_eq!(u.segments.len(), 1);
    }

    #[test]
    fn cap_drops_oldest_and_age_limit_expires() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::metric::now_ms();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[record(now - MAX_AGE_MS - 1)]).unwrap();
        s.append(&[record(now)]).unwrap();
        let u = s.read_oldest(1000, now, |_| {});
        assert_eq!((u.records.len(), u.expired), (1, 1));

        let one = s.bytes() / 2;
        let capped_dir = tempfile::tempdir().unwrap();
        let mut capped = Spool::open(capped_dir.path(), one * 3).unwrap();
        let mut dropped = 0;
        for i in 0..10 {
            dropped += capped.append(&[record(now - 100 + i)]).unwrap();
        }
        assert!(capped.bytes() <= one * 3);
        assert_eq!(
            dropped + capped.len() * 13,
            10 * 13,
            "dropped is counted in datums"
        );
        let u = capped.read_oldest(1000, now, |_| {});
        assert_eq!(
            u.records.last().unwrap().timestamp_ms,
            now - 91,
            "newest data is kept"
        );
    }

    #[test]
    fn records_are_restamped_before_their_age_is_judged() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::metric::now_ms();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        // Stamped in 1970 by a clock that was not synchronized, kept with its mark.
        let mut r = record(3_600_000);
        r.unsynced = Some(crate::clock::Unsynced {
            offset_ms: 3_600_000 - now,
            boot: None,
        });
        s.append(&[r]).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let u = s.read_oldest(1000, now, |r| {
            let mark = r.unsynced.take().unwrap();
            r.timestamp_ms += -mark.offset_ms;
        });
        assert_eq!((u.records.len(), u.expired), (1, 0));
        assert_eq!(u.records[0].timestamp_ms, 3_600_000 + now - 3_600_000);
    }

    #[test]
    fn corrupt_and_unfinished_files_do_not_stop_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000000000000000001.jsonl"), "not json\n").unwrap();
        fs::write(dir.path().join("00000000000000000002.tmp"), "half").unwrap();
        let now = crate::metric::now_ms();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[record(now)]).unwrap();
        let u = s.read_oldest(1000, now, |_| {});
        assert_eq!(u.records.len(), 1);
        assert!(dir.path().join("00000000000000000001.corrupt").exists());
        assert!(!dir.path().join("00000000000000000002.tmp").exists());
    }

    #[test]
    fn a_link_planted_at_a_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("elsewhere");
        fs::write(&victim, "keep me\n").unwrap();
        let now = crate::metric::now_ms();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("00000000000000000001.tmp")).unwrap();
        s.append(&[record(now)]).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n");
        assert_eq!(s.read_oldest(1000, now, |_| {}).records.len(), 1);
    }
}
