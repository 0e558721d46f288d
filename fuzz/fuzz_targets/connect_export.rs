//! The collector's reading of an Entra Connect configuration export (the JSON the Connect-server
//! probe's script writes, or an operator exported) and of a connector's partition data (XML).
//!
//! Input: one byte choosing the reader, then the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wbd_collector::probe::connect_server::{parse_export, parse_partition_data};
use wbd_wire::ConnectStateSource;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    if which & 1 == 0 {
        if let Ok(report) = parse_export(&text, ConnectStateSource::Export { path: "fuzz.json".into() }) {
            serde_json::to_vec(&report).expect("a report serialises");
        }
    } else {
        let _ = parse_partition_data(&text);
    }
});
