//! What the collector's site probes read from the network besides HTTP APIs: a domain
//! controller's security descriptors (`nTSecurityDescriptor`, binary, over LDAP) and the rights
//! they give, an SDDL DACL (the schema's `defaultSecurityDescriptor`), and a proxy's answer head
//! to `CONNECT`.
//!
//! Input: one byte choosing the reader, then the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wbd_collector::probe::active_directory::security::{
    RESET_PASSWORD, Right, Sid, access_on_child_users, access_on_object, parse_sddl_dacl,
    parse_security_descriptor,
};
use wbd_collector::probe::proxy::parse_head;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            let Ok(descriptor) = parse_security_descriptor(rest) else { return };
            let trustees: Vec<Sid> = descriptor.owner.iter().cloned().collect();
            if let Some(dacl) = &descriptor.dacl {
                let _ = access_on_object(dacl, &trustees, Right::Extended(RESET_PASSWORD));
                let _ = access_on_child_users(&[], dacl, &trustees, Right::Extended(RESET_PASSWORD));
            }
        }
        1 => {
            let domain = Sid::parse("S-1-5-21-1004336348-1177238915-682003330");
            let _ = parse_sddl_dacl(&String::from_utf8_lossy(rest), domain.as_ref());
        }
        _ => {
            if let Some(head) = parse_head(rest) {
                let _ = head.auth_schemes();
            }
        }
    }
});
