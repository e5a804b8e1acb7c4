//! Log files in other encodings than UTF-8 (`encoding` per entry) arrive as the text they hold.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use support::*;

const GROUP: &str = "test-encodings";

#[test]
fn latin1_utf16_and_shift_jis_files_arrive_as_their_text() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.log");
    let utf16 = dir.path().join("utf16.log");
    let sjis = dir.path().join("sjis.log");
    for f in [&latin1, &utf16, &sjis] {
        std::fs::write(f, "").unwrap();
    }
    let s = Setup::new(json!({
        "agent": {"instance": {"prefix": "test", "serial": "enc"}, "metrics_collection_interval": 3600,
                  "logs_collection_interval": 1},
        "logs": {"log_group_name": GROUP, "logs_collected": {"files": {"collect_list": [
            {"file_path": latin1, "encoding": "latin1"},
            {"file_path": utf16, "encoding": "utf-16"},
            {"file_path": sjis, "encoding": "Shift_JIS"}
        ]}}}
    }));
    let mut p = publisher(Some(&moto.url()))
        .arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let append = |path: &std::path::Path, bytes: &[u8]| {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    };
    append(&latin1, b"Gr\xfc\xdfe aus K\xf6ln\n\xe9t\xe9\r\n");
    let mut raw = vec![0xFF, 0xFE];
    for u in "Größe: 5 µm\r\nzweite Zeile\n".encode_utf16() {
        raw.extend(u.to_le_bytes());
    }
    // Written in two parts, the cut inside a character and inside a newline.
    append(&utf16, &raw[..7]);
    std::thread::sleep(Duration::from_millis(600));
    append(&utf16, &raw[7..]);
    append(&sjis, b"\x83\x65\x83\x58\x83\x67\n");
    for (stream, want) in [
        ("latin1.log", vec!["Grüße aus Köln", "été"]),
        ("utf16.log", vec!["Größe: 5 µm", "zweite Zeile"]),
        ("sjis.log", vec!["テスト"]),
    ] {
        let got = moto.wait_for_messages(GROUP, stream, Duration::from_secs(30), |m| {
            m.len() >= want.len()
        });
        assert_eq!(got, want, "{}", s.log());
    }
    signal(&p, libc::SIGTERM);
    assert!(wait_exit(&mut p, Duration::from_secs(30)).success());
}
