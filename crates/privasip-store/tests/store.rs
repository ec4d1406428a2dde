//! The store on a real SQLite file: users, bindings and calls survive
//! closing and reopening it.

use privasip_store::{BindingRow, Store, UserRow};

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("privasip.db");
    {
        let mut s = Store::open(&path).expect("open");
        s.put_user(&UserRow {
            realm: "b.example".into(),
            user: "bob".into(),
            ha1_md5: "a".repeat(32),
            ha1_sha256: "b".repeat(64),
            aes_next: 0,
        })
        .expect("user");
        s.put_bindings(
            "sip:bob@b.example",
            &[BindingRow {
                contact: "sip:bob@192.0.2.4".into(),
                q: 1000,
                expires_unix: 2_000,
                call_id: "c".into(),
                cseq: 1,
            }],
        )
        .expect("bindings");
        s.call_started("alice", "ps1h.token", "call-1", 1_000)
            .expect("call");
        assert!(s.call_ended("call-1", 1_060).expect("end"));
        assert!(!s.call_ended("call-1", 1_070).expect("only once"));
    }
    let s = Store::open(&path).expect("reopen");
    assert!(s.has_user("b.example", "bob").expect("query"));
    assert_eq!(s.users().expect("users").len(), 1);
    assert_eq!(s.bindings(1_500).expect("bindings").len(), 1);
    assert!(s.bindings(2_000).expect("bindings").is_empty(), "expired");
    let calls = s.calls().expect("calls");
    assert_eq!(calls[0].ended_unix, Some(1_060));
    assert!(!format!("{:?}", calls[0]).contains("alice"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(s.delete_user("b.example", "bob").expect("delete"));
}

#[test]
fn aes_counters_only_rise_and_restart_with_a_new_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("privasip.db");
    let user = |sha: &str| UserRow {
        realm: "a.example".into(),
        user: "alice".into(),
        ha1_md5: "a".repeat(32),
        ha1_sha256: sha.repeat(64),
        aes_next: 99,
    };
    {
        let s = Store::open(&path).expect("open");
        s.put_user(&user("b")).expect("user");
        assert_eq!(
            s.users().expect("users")[0].aes_next,
            0,
            "not taken from the row"
        );
        assert!(s.set_aes_next("alice", 7).expect("set"));
        assert!(s.set_aes_next("alice", 3).expect("set"));
        assert!(!s.set_aes_next("nobody", 3).expect("set"));
    }
    let s = Store::open(&path).expect("reopen");
    assert_eq!(s.users().expect("users")[0].aes_next, 7, "never goes down");
    s.put_user(&user("b")).expect("same password");
    assert_eq!(s.users().expect("users")[0].aes_next, 7);
    s.put_user(&user("c")).expect("new password");
    assert_eq!(s.users().expect("users")[0].aes_next, 0);
}
