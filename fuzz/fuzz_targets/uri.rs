//! Any string as a URI: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privasip_message::Uri;

fuzz_target!(|s: &str| {
    if let Ok(uri) = Uri::parse(s) {
        let _ = uri.scheme();
        if let Some(sip) = uri.as_sip() {
            let _ = (sip.user, sip.host, sip.port);
            let _ = sip.params.iter().count();
        }
    }
});
