//! torrc files for each kind of node.

use std::fmt::Write as _;
use std::path::Path;

use privasip_tor::DirAuthority;

use crate::Scheduler;

/// Authorities vote every this many seconds. A test network's onion
/// directory period is 24 * this / 60 minutes, and arti will not go below
/// 5 minutes: 20 s (8 minutes) keeps C tor and arti in step.
pub(crate) const VOTING_INTERVAL: u32 = 20;

/// Where a relay's OR port listens: with latency, on a port it does not
/// advertise, behind the forwarder on the one it does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wiring {
    pub(crate) real_or_port: Option<u16>,
}

/// What every node shares.
fn common(data: &Path, nickname: &str, auths: &[DirAuthority], sched: Scheduler) -> String {
    let d = data.display();
    let mut s = String::new();
    let _ = writeln!(s, "# privasip testnet: {nickname}");
    let _ = writeln!(s, "TestingTorNetwork 1");
    let _ = writeln!(s, "DataDirectory {d}");
    let _ = writeln!(s, "PidFile {d}/tor.pid");
    let _ = writeln!(s, "Log notice file {d}/notice.log");
    let _ = writeln!(s, "Nickname {nickname}");
    let _ = writeln!(s, "ShutdownWaitLength 0");
    let _ = writeln!(s, "AssumeReachable 1");
    let _ = writeln!(s, "PathsNeededToBuildCircuits 0.67");
    // Otherwise tor learns a ~45 ms timeout on loopback, and onion
    // circuits then keep timing out.
    let _ = writeln!(s, "LearnCircuitBuildTimeout 0");
    let _ = writeln!(s, "AddressDisableIPv6 1");
    let _ = writeln!(s, "ClientUseIPv6 0");
    let _ = writeln!(s, "OutboundBindAddress 127.0.0.1");
    // GeoIP tables cost ~90 MB per process and mean nothing here.
    let _ = writeln!(s, "GeoIPFile /dev/null");
    let _ = writeln!(s, "GeoIPv6File /dev/null");
    let _ = writeln!(s, "Schedulers {}", sched.torrc());
    for a in auths {
        let _ = writeln!(
            s,
            "DirAuthority {} orport={} no-v2 v3ident={} {} {}",
            a.nickname,
            a.or_addr.port(),
            a.v3ident,
            a.dir_addr,
            a.fingerprint
        );
    }
    s
}

/// A relay: exit (to anywhere: with OutboundBindAddress 127.0.0.1 nothing
/// leaves the machine, and a loopback-only policy leaves *no* usable exit
/// in the microdescriptors) and HSDir.
pub(crate) fn relay(
    data: &Path,
    nickname: &str,
    or_port: u16,
    auths: &[DirAuthority],
    sched: Scheduler,
    wiring: Wiring,
) -> String {
    let mut s = common(data, nickname, auths, sched);
    let _ = writeln!(s, "SocksPort 0");
    let _ = writeln!(s, "Address 127.0.0.1");
    match wiring.real_or_port {
        None => {
            let _ = writeln!(s, "ORPort 127.0.0.1:{or_port}");
        }
        Some(real) => {
            let _ = writeln!(s, "ORPort 127.0.0.1:{or_port} NoListen");
            let _ = writeln!(s, "ORPort 127.0.0.1:{real} NoAdvertise");
        }
    }
    let _ = writeln!(s, "ExitRelay 1");
    let _ = writeln!(s, "ExitPolicyRejectPrivate 0");
    let _ = writeln!(s, "ExitPolicy accept *:*");
    let _ = writeln!(s, "ServerDNSResolvConfFile /dev/null");
    let _ = writeln!(s, "ServerDNSDetectHijacking 0");
    let _ = writeln!(s, "ContactInfo privasip-testnet@localhost");
    s
}

/// An authority: a relay that also votes. It votes every relay in `all`
/// Exit, Guard, HSDir, Fast and Stable from the first consensus on. A
/// young network has no history to earn them with: Stable went to the
/// relays at or above the median uptime (a relay started a second later
/// never caught up), Fast to all but the slowest eighth, and an onion
/// service on a network short of them sometimes never published.
pub(crate) fn authority(
    data: &Path,
    me: &DirAuthority,
    auths: &[DirAuthority],
    all: &[String],
    sched: Scheduler,
    wiring: Wiring,
) -> String {
    let mut s = relay(data, &me.nickname, me.or_addr.port(), auths, sched, wiring);
    let _ = writeln!(s, "DirPort {}", me.dir_addr);
    let _ = writeln!(s, "AuthoritativeDirectory 1");
    let _ = writeln!(s, "V3AuthoritativeDirectory 1");
    let _ = writeln!(s, "V3AuthVotingInterval {VOTING_INTERVAL}");
    let _ = writeln!(s, "V3AuthVoteDelay 2");
    let _ = writeln!(s, "V3AuthDistDelay 2");
    let _ = writeln!(s, "TestingV3AuthInitialVotingInterval 5");
    let _ = writeln!(s, "TestingV3AuthInitialVoteDelay 2");
    let _ = writeln!(s, "TestingV3AuthInitialDistDelay 2");
    let _ = writeln!(s, "AuthDirFastGuarantee 1 bytes");
    let _ = writeln!(s, "AuthDirVoteStableGuaranteeMinUptime 0");
    let _ = writeln!(s, "AuthDirVoteStableGuaranteeMTBF 0");
    let all = all.join(",");
    for flag in ["Exit", "Guard", "HSDir"] {
        let _ = writeln!(s, "TestingDirAuthVote{flag} {all}");
    }
    s
}

/// A client daemon: SOCKS with isolation by credentials, and a control
/// port for onion services.
pub(crate) fn client(
    data: &Path,
    nickname: &str,
    socks: u16,
    control: u16,
    auths: &[DirAuthority],
    sched: Scheduler,
) -> String {
    let mut s = common(data, nickname, auths, sched);
    let _ = writeln!(s, "SocksPort 127.0.0.1:{socks} IsolateSOCKSAuth");
    let _ = writeln!(s, "ControlPort 127.0.0.1:{control}");
    let _ = writeln!(s, "CookieAuthentication 1");
    s
}
