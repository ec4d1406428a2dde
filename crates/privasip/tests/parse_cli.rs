//! `privasip parse` run as a user would, over the RFC 4475 messages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rfc4475")
}

fn privasip(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("privasip runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("privasip exits")
}

fn manifest() -> Vec<(String, String)> {
    std::fs::read_to_string(testdata().join("MANIFEST.tsv"))
        .expect("manifest")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[2].to_owned())
        })
        .collect()
}

#[test]
fn one_line_per_file_matching_the_manifest() {
    let files: Vec<String> = manifest()
        .iter()
        .map(|(f, _)| testdata().join(f).display().to_string())
        .collect();
    let args: Vec<&str> = std::iter::once("parse")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = privasip(&args, None);
    assert_eq!(out.status.code(), Some(1), "some files are invalid");
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 49);
    for ((file, class), line) in manifest().iter().zip(&lines) {
        assert!(line.contains(file.as_str()), "{line}");
        let verdict = if class == "invalid" {
            ": invalid: "
        } else {
            ": ok "
        };
        assert!(line.contains(verdict), "{file} ({class}): {line}");
    }
    assert!(stdout.contains("badvers.dat: invalid: SIP version is not 2.0 (505)"));
}

#[test]
fn valid_files_exit_zero_and_print_byte_exact() {
    let f = testdata().join("esc01.dat");
    let f = f.to_str().expect("path");
    let out = privasip(&["parse", "--print", f], None);
    assert_eq!(out.status.code(), Some(0));
    let original = std::fs::read(f).expect("read");
    let header = format!("{f}: ok INVITE\n");
    assert_eq!(&out.stdout[..header.len()], header.as_bytes());
    assert_eq!(&out.stdout[header.len()..], &original[..]);
}

#[test]
fn stream_mode_reads_back_to_back_messages_from_stdin() {
    let mut stream = b"\r\n\r\n".to_vec();
    for f in ["esc01.dat", "noreason.dat", "unreason.dat"] {
        stream.extend(std::fs::read(testdata().join(f)).expect("read"));
    }
    let out = privasip(&["parse", "--stream", "-"], Some(&stream));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-: ok 3 messages: INVITE, 100, 200\n"
    );
    // Cut the last message short: the stream ends inside it.
    let out = privasip(
        &["parse", "--stream", "-"],
        Some(&stream[..stream.len() - 10]),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("incomplete message"));
    // A stream message needs Content-Length.
    let inv2543 = std::fs::read(testdata().join("inv2543.dat")).expect("read");
    let out = privasip(&["parse", "--stream", "-"], Some(&inv2543));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no Content-Length"));
}

#[test]
fn usage_and_io_errors_exit_two() {
    assert_eq!(privasip(&["parse"], None).status.code(), Some(2));
    assert_eq!(
        privasip(&["parse", "--bogus", "x"], None).status.code(),
        Some(2)
    );
    let out = privasip(&["parse", "/nonexistent/file.sip"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let help = privasip(&["parse", "--help"], None);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit status"));
}
