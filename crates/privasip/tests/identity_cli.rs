//! `privasip keygen` and `privasip identity` run as an operator would.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn privasip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(args)
        .output()
        .expect("privasip runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn keygen_then_encrypt_and_decrypt_for_each_public_key_scheme() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (scheme, extra) in [("hpke", None), ("ecies", None), ("rsa", Some("2048"))] {
        let mut args = vec!["keygen", "--scheme", scheme, "--out", s(dir.path())];
        if let Some(bits) = extra {
            args.extend(["--bits", bits]);
        }
        let out = privasip(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with(&format!("{scheme} key ")));
        let key = dir.path().join(format!("{scheme}.key"));
        let public = dir.path().join(format!("{scheme}.pub"));
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{scheme}.key mode");

        // Not twice without --force.
        let again = privasip(&args);
        assert_eq!(again.status.code(), Some(1));
        assert!(stderr(&again).contains("--force"), "{}", stderr(&again));

        let enc = privasip(&[
            "identity",
            "encrypt",
            "--key",
            s(&public),
            "--context",
            "call-1",
            "alice",
        ]);
        assert!(enc.status.success(), "{}", stderr(&enc));
        let token = stdout(&enc);
        assert!(token.starts_with("ps1"), "{token}");

        let dec = privasip(&[
            "identity",
            "decrypt",
            "--key",
            s(&key),
            "--context",
            "call-1",
            &token,
        ]);
        assert!(dec.status.success(), "{}", stderr(&dec));
        assert_eq!(stdout(&dec), "alice");

        // Wrong dialog, forged, truncated: exit 1 and a reason.
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 5;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        for (bad, ctx, why) in [
            (token.as_str(), "call-2", "forged, altered"),
            (forged.as_str(), "call-1", "forged, altered"),
            (
                token.get(..token.len() / 2).unwrap_or_default(),
                "call-1",
                "",
            ),
        ] {
            let out = privasip(&[
                "identity",
                "decrypt",
                "--key",
                s(&key),
                "--context",
                ctx,
                bad,
            ]);
            assert_eq!(out.status.code(), Some(1), "{scheme}: {bad}");
            assert!(stderr(&out).contains(why), "{}", stderr(&out));
            assert!(stdout(&out).is_empty());
        }
    }
    // A token for the HPKE key does not open with the ECIES key.
    let enc = privasip(&[
        "identity",
        "encrypt",
        "--key",
        s(&dir.path().join("hpke.pub")),
        "bob",
    ]);
    let out = privasip(&[
        "identity",
        "decrypt",
        "--key",
        s(&dir.path().join("ecies.key")),
        &stdout(&enc),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("another scheme"), "{}", stderr(&out));
}

#[test]
fn private_keys_readable_by_others_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = privasip(&["keygen", "--out", s(dir.path())]);
    assert!(out.status.success());
    let key = dir.path().join("hpke.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = privasip(&[
        "identity",
        "decrypt",
        "--key",
        s(&key),
        "ps1h.AAAAAAAA.AAAA",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    // A public key where a private one belongs.
    let out = privasip(&[
        "identity",
        "decrypt",
        "--key",
        s(&dir.path().join("hpke.pub")),
        "ps1h.AAAAAAAA.AAAA",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn aes_tokens_from_a_shared_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("alice.secret");
    std::fs::write(&secret, "5d41402abc4b2a76b9719d911017c592\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let enc = privasip(&[
        "identity",
        "encrypt",
        "--scheme",
        "aes",
        "--key",
        s(&secret),
        "--counter",
        "5",
        "alice",
    ]);
    assert!(enc.status.success(), "{}", stderr(&enc));
    let token = stdout(&enc);
    assert!(token.starts_with("ps1a."));
    let dec = privasip(&[
        "identity",
        "decrypt",
        "--key",
        s(&secret),
        "--user",
        "alice",
        &token,
    ]);
    assert!(dec.status.success(), "{}", stderr(&dec));
    assert_eq!(stdout(&dec), "alice");
    let no_user = privasip(&["identity", "decrypt", "--key", s(&secret), &token]);
    assert_eq!(no_user.status.code(), Some(1));
    assert!(stderr(&no_user).contains("--user"));
}

#[test]
fn help_teaches() {
    for cmd in [
        &["keygen", "--help"][..],
        &["identity", "encrypt", "--help"],
    ] {
        let out = privasip(cmd);
        assert!(out.status.success());
        assert!(stdout(&out).contains("Example") || stdout(&out).contains("Exit status"));
    }
}
