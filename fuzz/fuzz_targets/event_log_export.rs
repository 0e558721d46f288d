//! The collector's reading of an event-log export (`wevtutil qe /f:xml` or an operator's file):
//! the bytes as Windows tools write them (UTF-8 or UTF-16 LE), the events in them, and the
//! report built from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wbd_collector::probe::event_log::{Bookmark, decode_text, parse_events_xml, window_report};
use wbd_wire::EventLogSource;

fuzz_target!(|data: &[u8]| {
    let text = decode_text(data);
    let Ok(events) = parse_events_xml(&text) else { return };
    let providers: Vec<String> = events.iter().map(|e| e.provider.clone()).collect();
    let source = EventLogSource::ExportFile { path: "fuzz.xml".into() };
    let (report, bookmark) =
        window_report(source.clone(), events.clone(), &providers, 50, &Bookmark::default());
    serde_json::to_vec(&report).expect("a report serialises");
    // The next run, over the same events, with the bookmark the first one left.
    let _ = window_report(source, events, &providers, 50, &bookmark);
});
