//! Every example configuration under examples/ is valid (`--check`).

use std::path::Path;
use std::process::Command;

#[test]
fn example_proxy_configurations_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).expect("examples/") {
        let path = e.expect("entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !(name.starts_with("proxy") && name.ends_with(".toml")) {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_privasip"))
            .args(["proxy", "--check", "--config"])
            .arg(&path)
            .output()
            .expect("privasip runs");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} example proxy configurations");
}
