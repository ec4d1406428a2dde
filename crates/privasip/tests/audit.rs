//! `privasip audit` from the command line: findings and exit status.

use std::process::Command;

fn audit(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .arg("audit")
        .args(args)
        .output()
        .expect("privasip audit runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn findings_exit_1_clean_exits_0_usage_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("proxy.log");
    std::fs::write(
        &log,
        "INFO forwarding INVITE for sip:ps1h.QmFy@b.example\nDEBUG From: \"Alice Liddell\" <sip:alice@a.example>\n",
    )
    .expect("write");
    let log = log.to_str().expect("utf-8 path");

    let (code, stdout, _) = audit(&["--id", "alice", "--name", "Alice Liddell", log]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("proxy.log:2: user ID \"alice\" in: DEBUG From:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("proxy.log:2: display name \"Alice Liddell\""),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "audit: 2 finding(s) in 1 file(s): 0 packet(s), 0 with a payload; 2 line(s)\n"
        ),
        "{stdout}"
    );

    let (code, stdout, _) = audit(&["--id", "carol", log]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.starts_with("audit: clean: nothing found in 1 file(s)"),
        "{stdout}"
    );

    let (code, _, stderr) = audit(&[log]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("nothing to look for"), "{stderr}");

    let (code, _, stderr) = audit(&["--id", "alice", "--pcap", log]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not a pcap or pcapng capture"), "{stderr}");
}
